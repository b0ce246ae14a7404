"""CPU GRU kernels against the numpy oracle, finite differences, windowing and PyTorch."""

from __future__ import annotations

import textwrap

import cellcall
import numpy as np
import pytest
from boundscheck import run_checked
from gradcheck import check_grad, rel_err
from reference import gru as ref
from torchoracle import oracle

from charlm.backends.cpu import gru

TOL = {np.float32: 1e-5, np.float64: 1e-10}
GRADS = ("dw_ih", "dw_hh", "db_ih", "db_hh", "dx", "dh0")


def make(dtype, T=4, B=3, I=5, H=6, seed=0):
    """Random inputs and weights (scaled so the gates are not saturated)."""
    rng = np.random.default_rng(seed)
    f = lambda *s, k=1.0: (k * rng.standard_normal(s)).astype(dtype)
    return dict(x=f(T, B, I), h0=f(B, H, k=0.5), w_ih=f(3 * H, I, k=0.4), w_hh=f(3 * H, H, k=0.4),
                b_ih=f(3 * H, k=0.3), b_hh=f(3 * H, k=0.3))


def run(p, dhs, dhT, ws=None):
    """Kernel forward + backward; returns (hs copy, dict of gradients)."""
    T, B, I = p["x"].shape
    H = p["h0"].shape[1]
    ws = ws or gru.alloc(T, B, I, H, p["x"].dtype)
    cellcall.forward(gru, ws, dict(p, c0=np.ones_like(p["h0"])))  # c0 is ignored
    hs = ws.hs.copy()
    g = {k: np.full_like(p[k[1:]], np.nan) for k in GRADS}  # NaN: proves every output is overwritten
    g["dc0"] = np.full_like(p["h0"], np.nan)
    cellcall.backward(gru, ws, p, g, dhs, dhT, np.ones_like(p["h0"]))  # dcT is ignored
    assert not g.pop("dc0").any(), "dc0 must be zero-filled"
    return hs, g


def upstream(p, seed=1):
    T, B, _ = p["x"].shape
    H = p["h0"].shape[1]
    rng = np.random.default_rng(seed)
    dt = p["x"].dtype
    return rng.standard_normal((T, B, H)).astype(dt), rng.standard_normal((B, H)).astype(dt)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T", [1, 5])
def test_matches_reference(dtype, T):
    p = make(dtype, T=T)
    dhs, dhT = upstream(p)
    hs, g = run(p, dhs, dhT)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    ref_hs, _ = ref.forward(p64["x"], p64["h0"], p64["w_ih"], p64["w_hh"], p64["b_ih"], p64["b_hh"])
    want = ref.backward(p64["x"], p64["h0"], p64["w_ih"], p64["w_hh"], p64["b_ih"], p64["b_hh"],
                        dhs.astype(np.float64), dhT.astype(np.float64))
    assert hs.dtype == dtype
    assert rel_err(hs, ref_hs) < TOL[dtype]
    for k in GRADS:
        assert g[k].dtype == dtype
        assert rel_err(g[k], want[k]) < TOL[dtype], k


def test_gradcheck_float64():
    """Centered finite differences of L = sum(hs * R) + sum(h_T * R2) for every input tensor."""
    p = make(np.float64, T=4, B=2, I=3, H=4, seed=3)
    R, R2 = upstream(p, seed=4)
    T, B, I = p["x"].shape
    H = p["h0"].shape[1]
    ws = gru.alloc(T, B, I, H, np.float64)

    def loss():
        cellcall.forward(gru, ws, p)
        return float((ws.hs * R).sum() + (ws.hs[-1] * R2).sum())

    _, g = run(p, R, R2)
    rng = np.random.default_rng(5)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh", "x", "h0"):
        err = check_grad(loss, p[name], g["d" + name], rng, k=10)
        assert err < 1e-6, (name, err)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_windows_equal_one(dtype):
    """Two windows of T with carried state (h0 aliasing the last output) == one window of 2T."""
    T = 3
    p = make(dtype, T=2 * T, seed=7)
    dhs, dhT = upstream(p, seed=8)
    hs_full, g_full = run(p, dhs, dhT)
    _, B, I = p["x"].shape
    H = p["h0"].shape[1]
    first = dict(p, x=np.ascontiguousarray(p["x"][:T]))
    # forward: the second window starts from ws.hs[T-1] of the same workspace (in-place carry)
    ws = gru.alloc(T, B, I, H, dtype)
    cellcall.forward(gru, ws, first)
    hs1 = ws.hs.copy()
    cellcall.forward(gru, ws, dict(p, x=np.ascontiguousarray(p["x"][T:]), h0=ws.hs[T - 1]))
    np.testing.assert_allclose(np.concatenate([hs1, ws.hs]), hs_full, rtol=0, atol=TOL[dtype])
    # backward: window 2 first, its dh0 becomes window 1's dhT; weight gradients add up
    second = dict(p, x=np.ascontiguousarray(p["x"][T:]), h0=hs1[T - 1].copy())
    hs2, g2 = run(second, np.ascontiguousarray(dhs[T:]), dhT)
    _, g1 = run(first, np.ascontiguousarray(dhs[:T]), g2["dh0"])
    np.testing.assert_allclose(np.concatenate([hs1, hs2]), hs_full, rtol=0, atol=TOL[dtype])
    for k in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
        assert rel_err(g1[k] + g2[k], g_full[k]) < 10 * TOL[dtype], k
    assert rel_err(np.concatenate([g1["dx"], g2["dx"]]), g_full["dx"]) < 10 * TOL[dtype]
    assert rel_err(g1["dh0"], g_full["dh0"]) < 10 * TOL[dtype]


def test_backward_leaves_forward_buffers_unchanged():
    """Backward writes its gradients to its own buffers: a second backward after one forward gives
    the same gradients (the kernel once overwrote the activations and refused a second call)."""
    p = make(np.float64, T=2)
    dhs, dhT = upstream(p)
    ws = gru.alloc(2, 3, 5, 6, np.float64)
    _, g1 = run(p, dhs, dhT, ws=ws)
    kept = {name: getattr(ws, name).copy() for name in ("h", "gp", "hn")}
    g2 = {k: np.full_like(v, np.nan) for k, v in g1.items()}
    cellcall.backward(gru, ws, p, g2, dhs, dhT)
    for name, value in kept.items():
        np.testing.assert_array_equal(getattr(ws, name), value, err_msg=name)
    for k in GRADS:
        np.testing.assert_array_equal(g2[k], g1[k], err_msg=k)


def test_matches_torch_gru():
    torch = oracle()
    torch.set_num_threads(1)
    T, B, I, H = 5, 3, 4, 6
    p = make(np.float32, T=T, B=B, I=I, H=H, seed=11)
    R, R2 = upstream(p, seed=12)
    net = torch.nn.GRU(I, H)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            getattr(net, name.replace("w_", "weight_").replace("b_", "bias_") + "_l0").copy_(torch.from_numpy(p[name]))
    x = torch.from_numpy(p["x"]).requires_grad_()
    h0 = torch.from_numpy(p["h0"])[None].clone().requires_grad_()
    out, hn = net(x, h0)
    ((out * torch.from_numpy(R)).sum() + (hn[0] * torch.from_numpy(R2)).sum()).backward()
    hs, g = run(p, R, R2)
    assert rel_err(hs, out.detach().numpy()) < 1e-5
    want = dict(dw_ih=net.weight_ih_l0.grad, dw_hh=net.weight_hh_l0.grad, db_ih=net.bias_ih_l0.grad,
                db_hh=net.bias_hh_l0.grad, dx=x.grad, dh0=h0.grad[0])
    for k, v in want.items():
        assert rel_err(g[k], v.numpy()) < 1e-5, k


_BOUNDSCHECK_SCRIPT = textwrap.dedent("""
    import numpy as np
    import numba
    assert numba.config.BOUNDSCHECK, "NUMBA_BOUNDSCHECK did not reach numba"
    from test_kernels_gru import make, run, upstream
    from gradcheck import rel_err
    from reference import gru as ref, layers
    from charlm.backends.cpu import xent
    p = make(np.float64, T=3, B=2, I=3, H=4)
    dhs, dhT = upstream(p)
    hs, g = run(p, dhs, dhT)
    want = ref.backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], dhs, dhT)
    assert all(rel_err(g[k], want[k]) < 1e-10 for k in want)
    logits = np.random.default_rng(0).standard_normal((5, 7))
    t = np.array([0, 6, 3, 3, 1], np.int32)
    d = np.empty_like(logits)
    loss = xent(logits, t, d, 1.0)
    want_loss, want_d = layers.xent(logits, t)
    assert abs(loss - want_loss) < 1e-10 and rel_err(d, want_d) < 1e-10
    print("BOUNDSCHECK-OK")
""")


def test_under_numba_boundscheck(tmp_path):
    """The kernels index only inside their arrays (a fresh compile with bounds checks on)."""
    assert "BOUNDSCHECK-OK" in run_checked(_BOUNDSCHECK_SCRIPT, tmp_path)
