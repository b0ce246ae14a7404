"""RNN (tanh, relu), LSTM and GRU cells: forward and BPTT of each backend against the numpy
references, CUDA against CPU, float64 on CUDA, carried-state aliasing, overwrite semantics."""

from __future__ import annotations

import cellcall
import numpy as np
import pytest
from cudahelp import dev, nan_like
from gradcheck import rel_err
from reference import gru as ref_gru
from reference import lstm as ref_lstm
from reference import rnn as ref_rnn

from charlm.backends import get

CASES = [("rnn", False), ("rnn", True), ("lstm", False), ("gru", False)]
IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
GRADS = ("dw_ih", "dw_hh", "db_ih", "db_hh", "dx", "dh0", "dc0")
SHAPE = (3, 3, 4, 5)  # T, B, I, H: 4H = 20 and N = 9 span several 4x4 tiles, ragged at the edges
_runs: dict = {}


def make(cell, T, B, I, H, dtype, seed=0):
    """Inputs, parameters and upstream gradients (all nonzero), host arrays."""
    rng = np.random.default_rng(seed)
    r = lambda *s, scale=1.0: (scale * rng.standard_normal(s)).astype(dtype)
    GH = GATES[cell] * H
    return dict(x=r(T, B, I), h0=r(B, H, scale=0.5), c0=r(B, H), w_ih=r(GH, I, scale=0.6),
                w_hh=r(GH, H, scale=0.6), b_ih=r(GH, scale=0.3), b_hh=r(GH, scale=0.3),
                dhs=r(T, B, H), dhT=r(B, H), dcT=r(B, H))


def reference(cell, p, relu):
    """Host results of the numpy reference: hs, cs (lstm) and the gradients."""
    w = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if cell == "lstm":
        hs, cs, _ = ref_lstm.forward(p["x"], p["h0"], p["c0"], *w)
        g = ref_lstm.backward(p["x"], p["h0"], p["c0"], *w, p["dhs"], p["dhT"], p["dcT"])
        return dict(hs=hs, cs=cs, **g)
    if cell == "gru":
        hs, _ = ref_gru.forward(p["x"], p["h0"], *w)
        g = ref_gru.backward(p["x"], p["h0"], *w, p["dhs"], p["dhT"])
    else:
        hs = ref_rnn.forward(p["x"], p["h0"], *w, relu=relu)
        g = ref_rnn.backward(p["x"], p["h0"], *w, p["dhs"], p["dhT"], relu=relu)
    return dict(hs=hs, dc0=np.zeros_like(p["h0"]), **g)


def run(be, cell, p, relu):
    """Forward then backward on backend ``be``; host copies of hs, cs and every gradient."""
    mod = be.cells[cell]
    T, B, I = p["x"].shape
    H = p["h0"].shape[1]
    ws = mod.alloc(T, B, I, H, p["x"].dtype, **({"relu": relu} if cell == "rnn" else {}))
    d = devdict(be, p)
    cellcall.forward(mod, ws, d)
    out = {k: nan_like(be, p[k[1:]]) for k in GRADS}
    cellcall.backward(mod, ws, d, out, d["dhs"], d["dhT"], d["dcT"])
    res = {k: be.to_host(v) for k, v in out.items()}
    res["hs"] = be.to_host(ws.hs)
    if cell == "lstm":
        res["cs"] = be.to_host(ws.cs)
    return res


def devdict(be, p):
    """The named host arrays of ``make`` as device arrays."""
    return dict(zip(p, dev(be, *p.values()), strict=True))


def cached_run(device, cell, relu):
    key = (device, cell, relu)
    if key not in _runs:
        _runs[key] = run(get(device), cell, make(cell, *SHAPE, np.float32), relu)
    return _runs[key]


@pytest.mark.parametrize("cell,relu", CASES, ids=IDS)
def test_matches_reference(be, cell, relu):
    got = cached_run(be.name, cell, relu)
    want = reference(cell, make(cell, *SHAPE, np.float32), relu)
    for k, v in want.items():
        assert np.isfinite(got[k]).all(), f"{k}: not every entry written"
        assert rel_err(got[k], v) < 1e-5, f"{be.name} {cell} {k}: {rel_err(got[k], v):.2e}"


@pytest.mark.parametrize("cell,relu", CASES, ids=IDS)
def test_cuda_matches_cpu(cell, relu):
    cpu, gpu = cached_run("cpu", cell, relu), cached_run("cuda", cell, relu)
    assert set(cpu) == set(gpu)
    for k in cpu:
        assert rel_err(gpu[k], cpu[k]) < 1e-5, f"{cell} {k}: {rel_err(gpu[k], cpu[k]):.2e}"


@pytest.mark.parametrize("cell,relu", CASES, ids=IDS)
def test_cuda_float64(cell, relu):
    p = make(cell, 2, 2, 3, 3, np.float64, seed=3)
    got, want = run(get("cuda"), cell, p, relu), reference(cell, p, relu)
    for k, v in want.items():
        assert got[k].dtype == np.float64
        assert rel_err(got[k], v) < 1e-10, f"{cell} {k}: {rel_err(got[k], v):.2e}"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carried_state_may_alias_the_workspace(cell):
    """Window 2 starts from views of window 1's final state (ws.hs[-1] is h[T] itself)."""
    be = get("cuda")
    mod = be.cells[cell]
    p = make(cell, 2, 2, 3, 4, np.float32, seed=5)
    ws = mod.alloc(2, 2, 3, 4, np.float32)
    d = devdict(be, p)
    cellcall.forward(mod, ws, d)
    hT = be.to_host(ws.hs)[-1]
    cT = be.to_host(ws.cs)[-1] if cell == "lstm" else p["c0"]
    c_arg = ws.cs[-1] if cell == "lstm" else None
    cellcall.forward(mod, ws, dict(d, h0=ws.hs[-1], c0=c_arg))
    want = reference(cell, dict(p, h0=hT, c0=cT), False)
    assert rel_err(be.to_host(ws.hs), want["hs"]) < 1e-5


def test_backward_overwrites_and_runs_again_on_one_forward():
    be = get("cuda")
    p = make("lstm", 2, 2, 3, 4, np.float32, seed=7)
    mod = be.cells["lstm"]
    ws = mod.alloc(2, 2, 3, 4, np.float32)
    d = devdict(be, p)
    up = (d["dhs"], d["dhT"], d["dcT"])
    cellcall.forward(mod, ws, d)
    outs = {k: be.zeros(p[k[1:]].shape) for k in GRADS}
    cellcall.backward(mod, ws, d, outs, *up)
    first = {k: be.to_host(o) for k, o in outs.items()}
    cellcall.backward(mod, ws, d, outs, *up)
    for k, o in outs.items():
        np.testing.assert_array_equal(be.to_host(o), first[k])

    g = make("gru", 2, 2, 3, 4, np.float32, seed=7)
    gm = be.cells["gru"]
    gws = gm.alloc(2, 2, 3, 4, np.float32)
    gd = devdict(be, g)
    gouts = {k: be.zeros(g[k[1:]].shape) for k in GRADS}
    cellcall.forward(gm, gws, gd)
    cellcall.backward(gm, gws, gd, gouts, *up)
    gfirst = {k: be.to_host(o) for k, o in gouts.items()}
    cellcall.backward(gm, gws, gd, gouts, *up)   # backward leaves forward's buffers as they were
    for k, o in gouts.items():
        np.testing.assert_array_equal(be.to_host(o), gfirst[k])
