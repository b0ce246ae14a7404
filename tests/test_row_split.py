"""The recurrent loops' row split (``recurrent.row_split``): the threads take row chunks in turn and
run each one's rows through all T steps. It must give the unit split's results bit for bit (the
bias gradients to rounding: they are summed per row chunk first), on any thread count, and match
the numpy reference."""

from __future__ import annotations

import textwrap

import cellcall
import numba
import numpy as np
import pytest
from boundscheck import run_checked
from gradcheck import rel_err
from reference import gru as ref_gru
from reference import lstm as ref_lstm
from reference import rnn as ref_rnn

from charlm.backends.cpu import gru, lstm, recurrent, rnn

CELLS = {"lstm": (lstm, ref_lstm, True), "gru": (gru, ref_gru, False), "rnn": (rnn, ref_rnn, False)}
EXACT = ("dw_ih", "dw_hh", "dx", "dh0", "dc0")


def make(T, B, I, H, G, dtype, lstm_state, seed=0):
    rng = np.random.default_rng(seed)
    r = lambda *s, scale=1.0: (scale * rng.standard_normal(s)).astype(dtype)
    p = dict(x=r(T, B, I), h0=r(B, H, scale=0.5), w_ih=r(G * H, I, scale=0.6), w_hh=r(G * H, H, scale=0.6),
             b_ih=r(G * H, scale=0.3), b_hh=r(G * H, scale=0.3))
    if lstm_state:
        p["c0"] = r(B, H)
    up = tuple(r(*s) for s in ((T, B, H), (B, H), (B, H)))
    return p, up


def run(mod, p, up, nr, monkeypatch, with_c):
    monkeypatch.setattr(mod, "row_split", lambda *a, **k: nr)
    T, B, I = p["x"].shape
    H = p["h0"].shape[1]
    ws = mod.alloc(T, B, I, H, p["x"].dtype)
    cellcall.forward(mod, ws, p)
    assert int(ws.nr[0]) == nr
    g = {k: np.full_like(p[k[1:]], np.nan) for k in ("dw_ih", "dw_hh", "db_ih", "db_hh", "dx", "dh0")}
    if with_c:
        g["dc0"] = np.full_like(p["c0"], np.nan)
    dhs, dhT, dcT = up
    cellcall.backward(mod, ws, p, g, dhs, dhT, dcT if with_c else None)
    out = {"hs": ws.hs.copy()}
    out.update(g)
    return out


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("threads", [2, 1])
def test_row_split_matches_the_unit_split(cell, threads, monkeypatch):
    mod, _, with_c = CELLS[cell]
    numba.set_num_threads(threads)
    p, up = make(5, 19, 6, 10, mod.G, np.float32, with_c)
    try:
        want = run(mod, p, up, 1, monkeypatch, with_c)
        for nr in (2, 3, 5):  # 19 rows: chunks of 9/10, 6/6/7 and 3-4, each with a one-row edge; more
            # chunks than threads: the threads take them in turn
            got = run(mod, p, up, nr, monkeypatch, with_c)
            np.testing.assert_array_equal(got["hs"], want["hs"])
            for k in EXACT:
                if k in want:
                    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
            for k in ("db_ih", "db_hh"):
                np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)
    finally:
        numba.set_num_threads(2)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_row_split_matches_the_reference_in_float64(cell, monkeypatch):
    mod, ref, with_c = CELLS[cell]
    p, up = make(4, 13, 3, 6, mod.G, np.float64, with_c, seed=3)
    got = run(mod, p, up, 3, monkeypatch, with_c)
    args = [p["x"], p["h0"]] + ([p["c0"]] if with_c else []) + [p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"]]
    hs = ref.forward(*args)
    hs = hs[0] if isinstance(hs, tuple) else hs  # lstm and gru return (hs, ...), rnn hs
    assert rel_err(got["hs"], hs) < 1e-10
    dhs, dhT, dcT = up
    want = ref.backward(*args, dhs, dhT, *([dcT] if with_c else []))
    for k, v in want.items():
        assert rel_err(got[k], v) < 1e-10, k


def test_the_rule(monkeypatch):
    monkeypatch.setattr(recurrent, "width", lambda: 2)
    monkeypatch.setattr(recurrent, "l2_bytes", lambda: 2 << 20)
    assert recurrent.row_split(64, 256, 4) == 8        # M lstm: W_hh 1 MB, half of a 2 MB L2 (Xeon); 4 chunks a thread
    assert recurrent.row_split(64, 352, 4) == 8        # 1.9 MB: still inside it
    assert recurrent.row_split(64, 384, 4) == 1        # 2.25 MB: over
    assert recurrent.row_split(64, 512, 4) == 1        # L lstm: 4 MB stays on the unit split
    assert recurrent.row_split(15, 128, 4) == 1        # under 2 row tiles per thread
    assert recurrent.row_split(16, 128, 4) == 2        # one chunk of 2 row tiles a thread
    assert recurrent.row_split(24, 128, 4) == 3        # chunks of at least 2 row tiles
    assert recurrent.row_split(256, 128, 4) == 8       # at most 4 a thread
    assert recurrent.row_split(1, 128, 4) == 1         # B 1: `charlm eval --file`
    monkeypatch.setattr(recurrent, "l2_bytes", lambda: 512 << 10)
    assert recurrent.row_split(64, 256, 4) == 1        # a 512 KB L2 (Zen 3)
    monkeypatch.setattr(recurrent, "l2_bytes", lambda: 1 << 20)
    assert recurrent.row_split(64, 256, 4) == 8        # a 1 MB L2 (Zen 4): M lstm 1 MB, M gru 768 KB
    assert recurrent.row_split(64, 256, 3) == 8
    monkeypatch.setattr(recurrent, "l2_bytes", lambda: 512 << 10)
    assert recurrent.row_split(32, 128, 4) == 4        # S lstm
    monkeypatch.setattr(recurrent, "width", lambda: 1)
    assert recurrent.row_split(64, 128, 4) == 1


def test_l2_size_is_read_or_defaults():
    assert recurrent.l2_bytes() >= 64 << 10


BOUNDSCHECK_SCRIPT = textwrap.dedent("""
    import numpy as np
    from test_row_split import CELLS, make
    import cellcall
    from gradcheck import rel_err
    for name, (mod, ref, with_c) in sorted(CELLS.items()):
        mod.row_split = lambda *a, **k: 3
        p, (dhs, dhT, dcT) = make(3, 13, 3, 5, mod.G, np.float64, with_c, seed=4)
        ws = mod.alloc(3, 13, 3, 5, np.float64)
        cellcall.forward(mod, ws, p)
        g = {k: np.full_like(p[k[1:]], np.nan) for k in ("dw_ih", "dw_hh", "db_ih", "db_hh", "dx", "dh0")}
        if with_c:
            g["dc0"] = np.full_like(p["c0"], np.nan)
        cellcall.backward(mod, ws, p, g, dhs, dhT, dcT if with_c else None)
        args = [p["x"], p["h0"]] + ([p["c0"]] if with_c else []) + [p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"]]
        want = ref.backward(*args, dhs, dhT, *([dcT] if with_c else []))
        assert int(ws.nr[0]) == 3
        for k, v in want.items():
            assert rel_err(g[k], v) < 1e-10, (name, k)
    print("ok")
""")


def test_row_split_boundscheck_subprocess(tmp_path):
    """Every cell's row-split loops under NUMBA_BOUNDSCHECK=1 (a fresh cache: they compile checked)."""
    assert run_checked(BOUNDSCHECK_SCRIPT, tmp_path).strip() == "ok"
