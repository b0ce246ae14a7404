"""The NumPy backend (charlm/backends/numpy) against the numpy oracle, finite differences, windowing,
the compiled CPU backend and PyTorch (the whole-model oracle is tests/test_torch_oracle.py, which
runs every cell on both backends)."""

from __future__ import annotations

import cellcall
import numpy as np
import pytest
from gradcheck import check_grad, rel_err
from reference import gru as ref_gru
from reference import lstm as ref_lstm
from reference import rnn as ref_rnn
from torchoracle import oracle

from charlm import backends

NP = backends.get("numpy")
CPU = backends.get("cpu")
TOL = {np.float32: 1e-5, np.float64: 1e-10}
DTYPES = [np.float32, np.float64]
CELLS = ["rnn", "rnn-relu", "lstm", "gru"]


def cell_of(name):
    return NP.cells[name.split("-")[0]], name.endswith("relu")


def make(name, dtype, T=4, B=3, I=5, H=6, seed=0):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[name.split("-")[0]]
    rng = np.random.default_rng(seed)
    f = lambda *s, k=1.0: (k * rng.standard_normal(s)).astype(dtype)
    p = dict(x=f(T, B, I), h0=f(B, H, k=0.5), w_ih=f(G * H, I, k=0.4), w_hh=f(G * H, H, k=0.4),
             b_ih=f(G * H, k=0.3), b_hh=f(G * H, k=0.3))
    if name == "lstm":
        p["c0"] = f(B, H)
    return p


def upstream(p, seed=1):
    T, B, _ = p["x"].shape
    H = p["h0"].shape[1]
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(p["x"].dtype) for s in ((T, B, H), (B, H), (B, H)))


def alloc(name, p):
    mod, relu = cell_of(name)
    T, B, I = p["x"].shape
    return mod.alloc(T, B, I, p["h0"].shape[1], p["x"].dtype, **({"relu": True} if relu else {}))


def run(name, p, dhs, dhT, dcT, ws=None):
    """Forward + backward into NaN-filled outputs (an output left unwritten shows): (hs copy, grads)."""
    mod, _ = cell_of(name)
    ws = ws or alloc(name, p)
    cellcall.forward(mod, ws, p)
    hs = ws.hs.copy()
    keys = ["dw_ih", "dw_hh", "db_ih", "db_hh", "dx", "dh0"] + (["dc0"] if "c0" in p else [])
    g = {k: np.full_like(p[k[1:]], np.nan) for k in keys}
    cellcall.backward(mod, ws, p, g, dhs, dhT, dcT if "c0" in p else None)
    return hs, g


def reference(name, p, dhs, dhT, dcT):
    q = {k: v.astype(np.float64) for k, v in p.items()}
    args = (q["x"], q["h0"], q["w_ih"], q["w_hh"], q["b_ih"], q["b_hh"])
    d = dhs.astype(np.float64), dhT.astype(np.float64)
    if name == "lstm":
        a = (q["x"], q["h0"], q["c0"], q["w_ih"], q["w_hh"], q["b_ih"], q["b_hh"])
        return ref_lstm.forward(*a)[0], ref_lstm.backward(*a, *d, dcT.astype(np.float64))
    if name == "gru":
        return ref_gru.forward(*args)[0], ref_gru.backward(*args, *d)
    relu = name == "rnn-relu"
    return ref_rnn.forward(*args, relu=relu), ref_rnn.backward(*args, *d, relu=relu)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("name", CELLS)
def test_cell_matches_reference(name, T, dtype):
    p = make(name, dtype, T=T)
    dhs, dhT, dcT = upstream(p)
    hs, g = run(name, p, dhs, dhT, dcT)
    want_hs, want = reference(name, p, dhs, dhT, dcT)
    assert hs.dtype == dtype
    assert rel_err(hs, want_hs) < TOL[dtype]
    for k, v in g.items():
        assert v.dtype == dtype
        assert rel_err(v, want[k]) < TOL[dtype], k


@pytest.mark.parametrize("name", CELLS)
def test_cell_gradcheck_float64(name):
    """Centered finite differences of L = sum(hs * R) + sum(h_T * R2) (+ sum(c_T * R3))."""
    p = make(name, np.float64, T=4, B=2, I=3, H=4, seed=3)
    R, R2, R3 = upstream(p, seed=4)
    mod, _ = cell_of(name)
    ws = alloc(name, p)
    if name == "rnn-relu":  # keep pre-activations away from the kink
        p["b_ih"] += 0.5

    def loss():
        cellcall.forward(mod, ws, p)
        out = float((ws.hs * R).sum() + (ws.hs[-1] * R2).sum())
        return out + (float((ws.cs[-1] * R3).sum()) if name == "lstm" else 0.0)

    _, g = run(name, p, R, R2, R3)
    rng = np.random.default_rng(5)
    for k in ("w_ih", "w_hh", "b_ih", "b_hh", "x", "h0") + (("c0",) if name == "lstm" else ()):
        err = check_grad(loss, p[k], g["d" + k], rng, k=10)
        assert err < 1e-6, (k, err)


@pytest.mark.parametrize("name", CELLS)
def test_two_windows_with_carried_state_equal_one(name):
    """The second window starts from ws.hs[T-1] of the same workspace (the trainer's in-place carry)."""
    T = 3
    p = make(name, np.float64, T=2 * T, seed=7)
    mod, _ = cell_of(name)
    _, B, I = p["x"].shape
    full = alloc(name, p)
    cellcall.forward(mod, full, p)
    first = dict(p, x=np.ascontiguousarray(p["x"][:T]))
    ws = alloc(name, first)
    cellcall.forward(mod, ws, first)
    hs1 = ws.hs.copy()
    second = dict(p, x=np.ascontiguousarray(p["x"][T:]), h0=ws.hs[T - 1])
    if name == "lstm":
        second["c0"] = ws.cs[T - 1]
    cellcall.forward(mod, ws, second)
    np.testing.assert_allclose(np.concatenate([hs1, ws.hs]), full.hs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CELLS)
def test_backward_twice_after_one_forward(name):
    p = make(name, np.float64, T=3)
    dhs, dhT, dcT = upstream(p)
    ws = alloc(name, p)
    _, g1 = run(name, p, dhs, dhT, dcT, ws=ws)
    mod, _ = cell_of(name)
    g2 = {k: np.full_like(v, np.nan) for k, v in g1.items()}
    cellcall.backward(mod, ws, p, g2, dhs, dhT, dcT if name == "lstm" else None)
    for k in g1:
        np.testing.assert_array_equal(g2[k], g1[k], err_msg=k)


def test_rnn_gru_zero_fill_dc0():
    for name in ("rnn", "gru"):
        p = make(name, np.float64, T=2)
        dhs, dhT, _ = upstream(p)
        mod, _ = cell_of(name)
        ws = alloc(name, p)
        cellcall.forward(mod, ws, p)
        g = {k: np.full_like(p[k[1:]], np.nan) for k in ("dw_ih", "dw_hh", "db_ih", "db_hh", "dx", "dh0")}
        g["dc0"] = np.full_like(p["h0"], np.nan)
        cellcall.backward(mod, ws, p, g, dhs, dhT)
        assert not g["dc0"].any(), name


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_cell_matches_torch(name):
    torch = oracle()
    T, B, I, H = 5, 3, 4, 5
    p = make(name, np.float32, T=T, B=B, I=I, H=H, seed=6)
    dhs, dhT, dcT = upstream(p, seed=7)
    ws = alloc(name, p)
    _, g = run(name, p, dhs, dhT, dcT, ws=ws)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name](I, H)
        with torch.no_grad():
            for k in ("w_ih", "w_hh", "b_ih", "b_hh"):
                getattr(m, k.replace("w_", "weight_").replace("b_", "bias_") + "_l0").copy_(torch.from_numpy(p[k]))
        x, h0 = (torch.from_numpy(p[k]).clone().requires_grad_() for k in ("x", "h0"))
        if name == "lstm":
            c0 = torch.from_numpy(p["c0"]).clone().requires_grad_()
            out, (hn, cn) = m(x, (h0[None], c0[None]))
        else:
            out, hn = m(x, h0[None])
        loss = (out * torch.from_numpy(dhs)).sum() + (hn[0] * torch.from_numpy(dhT)).sum()
        if name == "lstm":
            loss = loss + (cn[0] * torch.from_numpy(dcT)).sum()
        loss.backward()
    finally:
        torch.set_num_threads(threads)
    assert rel_err(ws.hs, out.detach().numpy()) < 1e-5
    theirs = {"dw_ih": m.weight_ih_l0.grad, "dw_hh": m.weight_hh_l0.grad, "db_ih": m.bias_ih_l0.grad,
              "db_hh": m.bias_hh_l0.grad, "dx": x.grad, "dh0": h0.grad}
    if name == "lstm":
        theirs["dc0"] = c0.grad
    for k, v in theirs.items():
        assert rel_err(g[k], v.numpy()) < 1e-5, k


# ----- the layers around the cells and the optimizer: against the compiled backend ------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_embed_onehot_linear_xent_match_the_cpu_backend(dtype):
    rng = np.random.default_rng(0)
    T, B, V, E, O = 4, 3, 7, 5, 6
    ids = rng.integers(0, V, (T, B)).astype(np.int32)
    ids[0, 0] = ids[1, 1] = V - 1  # a repeated id: backward must add
    w = rng.standard_normal((V, E)).astype(dtype)
    dout = rng.standard_normal((T, B, E)).astype(dtype)
    outs = {}
    for be in (NP, CPU):
        e, dw, oh = np.full((T, B, E), np.nan, dtype), np.full((V, E), np.nan, dtype), np.full((T, B, V), np.nan, dtype)
        be.embed_forward(e, ids, w)
        be.embed_backward(dw, ids, dout)
        be.onehot(oh, ids)
        x = e.reshape(T * B, E)
        rng = np.random.default_rng(1)  # the same draws for both backends
        lw, lb = rng.standard_normal((O, E)).astype(dtype), rng.standard_normal(O).astype(dtype)
        y = np.full((T * B, O), np.nan, dtype)
        be.linear_forward(y, x, lw, lb)
        dy = rng.standard_normal((T * B, O)).astype(dtype)
        dx, dlw, dlb = (np.full(s, np.nan, dtype) for s in ((T * B, E), (O, E), (O,)))
        be.linear_backward(dx, dlw, dlb, dy, x, lw)
        logits, tgt = y.copy(), rng.integers(0, O, T * B).astype(np.int32)
        dl = np.full_like(logits, np.nan)
        loss = be.xent(logits, tgt, dl, 0.25)
        loss_only = be.xent(logits, tgt, None, 1.0)
        inplace = logits.copy()
        loss_inplace = be.xent(inplace, tgt, inplace, 0.25)
        outs[be.name] = dict(e=e, dw=dw, oh=oh, y=y, dx=dx, dlw=dlw, dlb=dlb, dl=dl, inplace=inplace,
                             loss=np.array([loss, loss_only, loss_inplace]))
    for k, v in outs["cpu"].items():
        assert outs["numpy"][k].dtype == v.dtype, k
        assert rel_err(outs["numpy"][k], v) < TOL[dtype], k


def test_bad_ids_and_targets_and_nan_rows():
    with pytest.raises(ValueError, match="vocabulary"):
        NP.embed_forward(np.zeros((1, 1, 2), np.float32), np.array([[3]], np.int32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="vocabulary"):
        NP.onehot(np.zeros((1, 1, 3), np.float32), np.array([[-1]], np.int32))
    with pytest.raises(ValueError, match="vocabulary"):
        NP.xent(np.zeros((2, 3), np.float32), np.array([0, 3], np.int32), None, 1.0)
    logits = np.zeros((2, 3), np.float32)
    logits[1, 2] = np.nan
    assert np.isnan(NP.xent(logits, np.array([0, 1], np.int32), None, 1.0))
    big = np.array([[-1e4, -1e4, -1e4], [0.0, -3e4, 5.0]], np.float32)  # exp underflows without the max shift
    assert np.isfinite(NP.xent(big, np.array([1, 1], np.int32), None, 1.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizers_and_grad_utilities_match_the_cpu_backend(dtype):
    rng = np.random.default_rng(2)
    P = 37
    p0 = rng.standard_normal(P).astype(dtype)
    gs = [rng.standard_normal(P).astype(dtype) for _ in range(4)]
    cases = {
        "adam": lambda be, p, g, s, k: be.adam_step(p, g, s[0], s[1], 1e-2, 0.9, 0.99, 1e-8, 0.1, False, k),
        "adamw": lambda be, p, g, s, k: be.adam_step(p, g, s[0], s[1], 1e-2, 0.8, 0.999, 1e-6, 0.05, True, k),
        "sgd": lambda be, p, g, s, k: be.sgd_step(p, g, s[0], 0.1, 0.9, 0.01, k),
        "sgd-plain": lambda be, p, g, s, k: be.sgd_step(p, g, s[0], 0.1, 0.0, 0.0, k),
        "rmsprop": lambda be, p, g, s, k: be.rmsprop_step(p, g, s[0], s[1], 1e-2, 0.9, 1e-8, 0.5, 0.1, k),
        "rmsprop-plain": lambda be, p, g, s, k: be.rmsprop_step(p, g, s[0], s[1], 1e-2, 0.99, 1e-8, 0.0, 0.0, k),
    }
    for name, step in cases.items():
        got = {}
        for be in (NP, CPU):
            p, state = p0.copy(), [np.full_like(p0, np.nan), np.full_like(p0, np.nan)]  # step 1 reads no state
            for k, g in enumerate(gs, start=1):
                step(be, p, g, state, k)
            got[be.name] = p
        assert got["numpy"].dtype == dtype
        assert rel_err(got["numpy"] - p0, got["cpu"] - p0) < 100 * TOL[dtype], name
    g = gs[0].copy()
    assert abs(NP.grad_sumsq(g) - CPU.grad_sumsq(g)) < 1e-9 * CPU.grad_sumsq(g)
    a, b = g.copy(), g.copy()
    a[3] = b[3] = np.nan
    NP.clip_value_(a, 0.5)
    CPU.clip_value_(b, 0.5)
    np.testing.assert_array_equal(a, b)
    NP.scale_(a, 0.3)
    CPU.scale_(b, 0.3)
    np.testing.assert_array_equal(a, b)
    assert NP.all_finite(g) and not NP.all_finite(a)
