"""CPU embedding, one-hot, linear and softmax cross-entropy kernels against numpy and PyTorch."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from gradcheck import check_grad, rel_err
from reference import layers as ref
from torchoracle import oracle

from charlm.backends.cpu import embed_backward, embed_forward, linear_backward, linear_forward, onehot, xent
from charlm.backends.cpu.loss import exp_f

TOL = {np.float32: 1e-5, np.float64: 1e-10}
DTYPES = [np.float32, np.float64]


def ids_for(T, B, V, seed=0):
    ids = np.random.default_rng(seed).integers(0, V, (T, B)).astype(np.int32)
    ids[0, 0] = ids[1, 1] = V - 1  # a repeated id: backward must add, not overwrite
    return ids


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_forward_backward(dtype):
    T, B, V, E = 4, 3, 7, 5
    rng = np.random.default_rng(1)
    w = rng.standard_normal((V, E)).astype(dtype)
    ids = ids_for(T, B, V)
    out = np.full((T, B, E), np.nan, dtype)
    embed_forward(out, ids, w)
    np.testing.assert_array_equal(out, ref.embed_forward(ids, w))
    dout = rng.standard_normal((T, B, E)).astype(dtype)
    dw = np.full((V, E), np.nan, dtype)  # overwritten, never accumulated
    embed_backward(dw, ids, dout)
    np.testing.assert_allclose(dw, ref.embed_backward(ids, dout, V), rtol=TOL[dtype], atol=TOL[dtype])
    assert not dw[np.setdiff1d(np.arange(V), ids)].any()


def test_embedding_gradcheck():
    T, B, V, E = 3, 2, 6, 4
    rng = np.random.default_rng(2)
    w = rng.standard_normal((V, E))
    ids = ids_for(T, B, V)
    R = rng.standard_normal((T, B, E))
    out = np.empty((T, B, E))

    def loss():
        embed_forward(out, ids, w)
        return float((np.sin(out) * R).sum())

    embed_forward(out, ids, w)
    dw = np.empty_like(w)
    embed_backward(dw, ids, np.cos(out) * R)
    assert check_grad(loss, w, dw, rng, k=V * E) < 1e-8


def test_embedding_and_onehot_reject_bad_ids():
    w = np.zeros((4, 3), np.float32)
    bad = np.array([[0, 4]], np.int32)
    with pytest.raises(ValueError, match="vocabulary"):
        embed_forward(np.empty((1, 2, 3), np.float32), bad, w)
    with pytest.raises(ValueError, match="vocabulary"):
        embed_backward(np.empty_like(w), -bad, np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match="vocabulary"):
        onehot(np.empty((1, 2, 4), np.float32), bad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_onehot(dtype):
    ids = ids_for(3, 4, 6)
    out = np.full((3, 4, 6), 7, dtype)
    onehot(out, ids)
    np.testing.assert_array_equal(out, ref.onehot(ids, 6, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_backward(dtype):
    N, In, O = 6, 5, 4
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((N, In), (O, In), (O,)))
    out = np.full((N, O), np.nan, dtype)
    linear_forward(out, x, w, b)
    assert rel_err(out, ref.linear_forward(x, w, b)) < TOL[dtype]
    dout = rng.standard_normal((N, O)).astype(dtype)
    dx, dw, db = (np.full(s, np.nan, dtype) for s in ((N, In), (O, In), (O,)))
    linear_backward(dx, dw, db, dout, x, w)
    for got, want in zip((dx, dw, db), ref.linear_backward(dout, x, w), strict=True):
        assert rel_err(got, want) < TOL[dtype]
    dw2, db2 = np.full_like(dw, np.nan), np.full_like(db, np.nan)
    linear_backward(None, dw2, db2, dout, x, w)  # no input gradient wanted
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


def test_linear_gradcheck():
    N, In, O = 5, 4, 3
    rng = np.random.default_rng(4)
    x, w, b = (rng.standard_normal(s) for s in ((N, In), (O, In), (O,)))
    R = rng.standard_normal((N, O))
    out = np.empty((N, O))

    def loss():
        linear_forward(out, x, w, b)
        return float((np.tanh(out) * R).sum())

    linear_forward(out, x, w, b)
    dout = (1 - np.tanh(out) ** 2) * R
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    linear_backward(dx, dw, db, dout, x, w)
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        assert check_grad(loss, arr, grad, rng, k=12) < 1e-8


def logits_targets(dtype, N=7, V=11, seed=5, k=3.0):
    rng = np.random.default_rng(seed)
    return (k * rng.standard_normal((N, V))).astype(dtype), rng.integers(0, V, N).astype(np.int32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_matches_reference(dtype):
    logits, t = logits_targets(dtype)
    want_loss, want_grad = ref.xent(logits, t)
    assert abs(xent(logits, t, None, 1.0) - want_loss) < TOL[dtype] * abs(want_loss)
    d = np.full_like(logits, np.nan)
    loss = xent(logits, t, d, 0.25)
    assert abs(loss - want_loss) < TOL[dtype] * abs(want_loss)
    assert d.dtype == dtype
    assert rel_err(d, 0.25 * want_grad) < TOL[dtype]
    assert np.abs(d.sum(axis=1)).max() < 10 * TOL[dtype]  # softmax rows sum to 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_in_place(dtype):
    logits, t = logits_targets(dtype, seed=6)
    want_loss, want_grad = ref.xent(logits, t)
    buf = logits.copy()
    loss = xent(buf, t, buf, 2.0)
    assert abs(loss - want_loss) < TOL[dtype] * abs(want_loss)
    assert rel_err(buf, 2.0 * want_grad) < TOL[dtype]


def test_xent_gradcheck():
    logits, t = logits_targets(np.float64, N=4, V=6, seed=7)
    d = np.empty_like(logits)
    xent(logits, t, d, 1.0)
    err = check_grad(lambda: xent(logits, t, None, 1.0), logits, d, np.random.default_rng(0), k=24)
    assert err < 1e-8


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_huge_logits_stable(dtype):
    logits, t = logits_targets(dtype, N=6, V=9, seed=8, k=1e4)
    logits[0, :] = -1e4  # an all-very-negative row: exp underflows without the max shift
    logits[1, t[1]] = -3e4  # target far below the rest: loss ~ 3e4 + spread, still exact
    want_loss, want_grad = ref.xent(logits, t)
    d = np.empty_like(logits)
    loss = xent(logits, t, d, 1.0)
    assert np.isfinite(loss) and np.isfinite(d).all()
    assert abs(loss - want_loss) <= TOL[dtype] * abs(want_loss)
    np.testing.assert_allclose(d, want_grad, rtol=0, atol=TOL[dtype])


def test_xent_propagates_nan_and_rejects_bad_targets():
    logits, t = logits_targets(np.float32)
    logits[2, (t[2] + 1) % logits.shape[1]] = np.nan  # not the max, not the target
    assert np.isnan(xent(logits, t, None, 1.0))
    logits[2] = 0
    logits[3, 0] = np.inf
    assert np.isnan(xent(logits, t, None, 1.0))
    with pytest.raises(ValueError, match="vocabulary"):
        xent(np.zeros((2, 3), np.float32), np.array([0, 3], np.int32), None, 1.0)


@numba.njit
def _exp_all(a, out):
    for i in range(a.size):
        out[i] = exp_f(a[i])


def test_exp_f_float32_accuracy():
    a = np.concatenate([np.linspace(-87, 88, 200001), [0.0, -1e-8, 1e-8, -100.0, -np.inf]]).astype(np.float32)
    out = np.empty_like(a)
    _exp_all(a, out)
    want = np.exp(a.astype(np.float64))
    ok = want > 1.2e-38
    assert (np.abs(out[ok] - want[ok]) / want[ok]).max() < 2e-7
    assert (out[~ok] >= 0).all() and (out[~ok] < 1.2e-38).all()


def test_xent_matches_torch():
    torch = oracle()
    torch.set_num_threads(1)
    logits, t = logits_targets(np.float32, N=9, V=13, seed=9)
    x = torch.from_numpy(logits.copy()).requires_grad_()
    want = torch.nn.functional.cross_entropy(x, torch.from_numpy(t).long(), reduction="mean")
    want.backward()
    d = np.empty_like(logits)
    loss = xent(logits, t, d, 1.0 / len(t))
    assert abs(loss / len(t) - want.item()) < 1e-6 * abs(want.item())
    assert rel_err(d, x.grad.numpy()) < 1e-6
