"""CPU LSTM kernels against the plain-numpy reference, finite differences and torch."""

from __future__ import annotations

import textwrap

import cellcall
import numpy as np
import pytest
from boundscheck import run_checked
from gradcheck import check_grad, rel_err
from reference import lstm as ref
from torchoracle import oracle

from charlm.backends.cpu import lstm

TOL = {np.float32: 1e-5, np.float64: 1e-10}
GRADS = ("dw_ih", "dw_hh", "db_ih", "db_hh", "dx", "dh0", "dc0")


def make(T, B, I, H, dtype, seed=0):
    """Random inputs and parameters (names as the backend's arguments)."""
    rng = np.random.default_rng(seed)
    r = lambda *s, scale=1.0: (scale * rng.standard_normal(s)).astype(dtype)
    return dict(x=r(T, B, I), h0=r(B, H, scale=0.5), c0=r(B, H), w_ih=r(4 * H, I, scale=0.6),
                w_hh=r(4 * H, H, scale=0.6), b_ih=r(4 * H, scale=0.3), b_hh=r(4 * H, scale=0.3))


def upstream(T, B, H, dtype, seed=1):
    """dhs (T, B, H), dhT, dcT (B, H): all nonzero."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(dtype) for s in ((T, B, H), (B, H), (B, H)))


def run_backward(ws, p, dhs, dhT, dcT):
    """Backward into NaN-filled outputs (so a kernel that accumulates or skips one shows)."""
    g = {k: np.full_like(p[k[1:]], np.nan) for k in GRADS}
    cellcall.backward(lstm, ws, p, g, dhs, dhT, dcT)
    return g


def fwd(ws, p):
    cellcall.forward(lstm, ws, p)


def ref_args(p):
    return p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,B,I,H", [(6, 3, 4, 5), (1, 2, 3, 4)])
def test_matches_reference(dtype, T, B, I, H):
    p = make(T, B, I, H, dtype)
    ws = lstm.alloc(T, B, I, H, dtype)
    fwd(ws, p)
    hs, cs, acts = ref.forward(*ref_args(p))
    tol = TOL[dtype]
    assert rel_err(ws.hs, hs) < tol
    assert rel_err(ws.cs, cs) < tol
    assert rel_err(ws.gates, acts) < tol
    assert rel_err(ws.hs[T - 1], hs[-1]) < tol and rel_err(ws.cs[T - 1], cs[-1]) < tol
    dhs, dhT, dcT = upstream(T, B, H, dtype)
    g = run_backward(ws, p, dhs, dhT, dcT)
    want = ref.backward(*ref_args(p), dhs, dhT, dcT)
    for k in GRADS:
        assert np.all(np.isfinite(g[k])), k
        assert rel_err(g[k], want[k]) < tol, (k, rel_err(g[k], want[k]))
    # a second backward on the same forward gives the same result (no hidden state consumed)
    g2 = run_backward(ws, p, dhs, dhT, dcT)
    for k in GRADS:
        np.testing.assert_array_equal(g2[k], g[k])


@pytest.mark.parametrize("T", [1, 4])
def test_gradcheck_float64(T):
    B, I, H = 2, 3, 4
    p = make(T, B, I, H, np.float64, seed=2)
    R, R2, R3 = upstream(T, B, H, np.float64, seed=3)
    ws = lstm.alloc(T, B, I, H, np.float64)

    def loss():
        fwd(ws, p)
        return np.sum(ws.hs * R) + np.sum(ws.hs[-1] * R2) + np.sum(ws.cs[-1] * R3)

    fwd(ws, p)
    g = run_backward(ws, p, R, R2, R3)
    rng = np.random.default_rng(4)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh", "x", "h0", "c0"):
        err = check_grad(loss, p[name], g["d" + name], rng, k=40)
        assert err < 1e-6, (name, err)


def test_two_windows_equal_one_long_window():
    T, B, I, H = 3, 2, 3, 4
    p = make(2 * T, B, I, H, np.float64, seed=5)
    ws_long = lstm.alloc(2 * T, B, I, H, np.float64)
    fwd(ws_long, p)
    ws = lstm.alloc(T, B, I, H, np.float64)
    first = dict(p, x=p["x"][:T].copy())
    fwd(ws, first)
    np.testing.assert_allclose(ws.hs, ws_long.hs[:T], rtol=1e-12, atol=1e-14)
    # carry the state as views of the same workspace: forward must read them before overwriting
    second = dict(p, x=p["x"][T:].copy(), h0=ws.hs[T - 1], c0=ws.cs[T - 1])
    h0_true, c0_true = ws.hs[T - 1].copy(), ws.cs[T - 1].copy()
    fwd(ws, second)
    np.testing.assert_allclose(ws.hs, ws_long.hs[T:], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ws.cs, ws_long.cs[T:], rtol=1e-12, atol=1e-14)
    # backward uses the h0/c0 that forward saw, even though the views now hold new values
    dhs, dhT, dcT = upstream(T, B, H, np.float64)
    g = run_backward(ws, second, dhs, dhT, dcT)
    want = ref.backward(second["x"], h0_true, c0_true, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                        dhs, dhT, dcT)
    for k in GRADS:
        assert rel_err(g[k], want[k]) < 1e-10, k


def test_matches_torch():
    torch = oracle()
    T, B, I, H = 5, 3, 4, 5
    p = make(T, B, I, H, np.float32, seed=6)
    dhs, dhT, dcT = upstream(T, B, H, np.float32, seed=7)
    ws = lstm.alloc(T, B, I, H, np.float32)
    fwd(ws, p)
    g = run_backward(ws, p, dhs, dhT, dcT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = torch.nn.LSTM(I, H)
        with torch.no_grad():
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                getattr(m, name.replace("w_", "weight_").replace("b_", "bias_") + "_l0").copy_(
                    torch.from_numpy(p[name]))
        x, h0, c0 = (torch.from_numpy(p[k]).clone().requires_grad_() for k in ("x", "h0", "c0"))
        out, (hn, cn) = m(x, (h0[None], c0[None]))
        loss = (out * torch.from_numpy(dhs)).sum() + (hn[0] * torch.from_numpy(dhT)).sum() \
            + (cn[0] * torch.from_numpy(dcT)).sum()
        loss.backward()
    finally:
        torch.set_num_threads(threads)
    assert rel_err(ws.hs, out.detach().numpy()) < 1e-5
    assert rel_err(ws.cs[-1], cn[0].detach().numpy()) < 1e-5
    theirs = {"dw_ih": m.weight_ih_l0.grad, "dw_hh": m.weight_hh_l0.grad, "db_ih": m.bias_ih_l0.grad,
              "db_hh": m.bias_hh_l0.grad, "dx": x.grad, "dh0": h0.grad, "dc0": c0.grad}
    for k, v in theirs.items():
        assert rel_err(g[k], v.numpy()) < 1e-5, k


BOUNDSCHECK_SCRIPT = textwrap.dedent("""
    import numpy as np
    from test_kernels_lstm import make, upstream, fwd, run_backward, ref_args, GRADS
    from reference import lstm as ref
    from gradcheck import rel_err
    from charlm.backends.cpu import lstm
    p = make(3, 2, 3, 4, np.float64)
    dhs, dhT, dcT = upstream(3, 2, 4, np.float64)
    ws = lstm.alloc(3, 2, 3, 4, np.float64)
    fwd(ws, p)
    g = run_backward(ws, p, dhs, dhT, dcT)
    want = ref.backward(*ref_args(p), dhs, dhT, dcT)
    assert rel_err(ws.hs, ref.forward(*ref_args(p))[0]) < 1e-10
    for k in GRADS:
        assert rel_err(g[k], want[k]) < 1e-10, k
    print("ok")
""")


def test_boundscheck_subprocess(tmp_path):
    assert run_checked(BOUNDSCHECK_SCRIPT, tmp_path).strip() == "ok"
