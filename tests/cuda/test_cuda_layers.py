"""Embedding, one-hot, linear head and cross-entropy of each backend against the numpy
references; the CUDA GEMM in every transpose mode and its reductions on ragged shapes."""

from __future__ import annotations

import numpy as np
import pytest
from cudahelp import dev, nan_like
from gradcheck import rel_err
from reference import layers as ref

from charlm.backends.cuda import launch

T, B, V, E = 3, 3, 7, 5  # N = 9 rows: more than one 4-wide tile and one 8-thread grid


def ids_for(seed=0):
    ids = np.random.default_rng(seed).integers(0, V, (T, B)).astype(np.int32)
    ids[0, 0] = ids[1, 1] = V - 1  # a repeated id: backward must add, not overwrite
    return ids


def test_embedding(be):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((V, E)).astype(np.float32)
    ids = ids_for()
    out = nan_like(be, np.zeros((T, B, E), np.float32))
    be.embed_forward(out, ids, be.to_device(w))
    np.testing.assert_array_equal(be.to_host(out), ref.embed_forward(ids, w))
    dout = rng.standard_normal((T, B, E)).astype(np.float32)
    dw = nan_like(be, w)
    be.embed_backward(dw, ids, be.to_device(dout))
    got = be.to_host(dw)
    assert rel_err(got, ref.embed_backward(ids, dout, V)) < 1e-6
    assert not got[np.setdiff1d(np.arange(V), ids)].any()


def test_onehot(be):
    ids = ids_for(2)
    out = nan_like(be, np.zeros((T, B, V), np.float32))
    be.onehot(out, ids)
    np.testing.assert_array_equal(be.to_host(out), ref.onehot(ids, V))


def test_bad_ids_are_rejected(be):
    ids = ids_for()
    ids[2, 1] = V
    w = be.to_device(np.ones((V, E), np.float32))
    with pytest.raises(ValueError, match="vocabulary"):
        be.embed_forward(be.zeros((T, B, E)), ids, w)
    with pytest.raises(ValueError, match="vocabulary"):
        be.onehot(be.zeros((T, B, V)), -ids)


@pytest.mark.parametrize("with_dx", [True, False])
def test_linear(be, with_dx):
    N, I, O = 9, 6, 7
    rng = np.random.default_rng(3)
    x, w, b, dout = (rng.standard_normal(s).astype(np.float32) for s in ((N, I), (O, I), (O,), (N, O)))
    out = nan_like(be, np.zeros((N, O), np.float32))
    dx_, w_, b_, do_ = dev(be, x, w, b, dout)
    be.linear_forward(out, dx_, w_, b_)
    assert rel_err(be.to_host(out), ref.linear_forward(x, w, b)) < 1e-6
    dx, dw, db = nan_like(be, x) if with_dx else None, nan_like(be, w), nan_like(be, b)
    be.linear_backward(dx, dw, db, do_, dx_, w_)
    rdx, rdw, rdb = ref.linear_backward(dout, x, w)
    if with_dx:
        assert rel_err(be.to_host(dx), rdx) < 1e-6
    assert rel_err(be.to_host(dw), rdw) < 1e-6
    assert rel_err(be.to_host(db), rdb) < 1e-6


@pytest.mark.parametrize("mode", ["grad", "in-place", "loss-only"])
def test_xent(be, mode):
    N = 9
    rng = np.random.default_rng(4)
    logits = (3 * rng.standard_normal((N, V))).astype(np.float32)
    logits[2] += 1e4  # huge but finite: must stay exact
    tg = rng.integers(0, V, N).astype(np.int32)
    want, grad = ref.xent(logits, tg)
    lg = be.to_device(logits)
    dl = {"grad": nan_like(be, logits), "in-place": lg, "loss-only": None}[mode]
    loss = be.xent(lg, tg, dl, 0.25)
    assert isinstance(loss, float)
    assert abs(loss - want) < 1e-5 * abs(want)
    if dl is not None:
        assert rel_err(be.to_host(dl), 0.25 * grad) < 1e-5


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes NaN/inf with NumPy scalars
def test_xent_nan_and_bad_targets(be):
    logits = np.zeros((4, V), np.float32)
    tg = np.zeros(4, np.int32)
    assert be.xent(be.to_device(logits), tg, None, 1.0) == pytest.approx(4 * np.log(V))
    for bad in (np.nan, np.inf):
        logits[1, 3] = bad
        assert np.isnan(be.xent(be.to_device(logits), tg, None, 1.0))
    tg[3] = V
    with pytest.raises(ValueError, match="vocabulary"):
        be.xent(be.to_device(np.zeros((4, V), np.float32)), tg, None, 1.0)


@pytest.mark.parametrize("tile", [2, 3, 4, 16])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_modes(monkeypatch, tile, ta, tb):
    from charlm.backends.cuda.gemm import gemm

    monkeypatch.setattr(launch, "TILE", tile)
    M, N, K = 5, 7, 6
    rng = np.random.default_rng(tile)
    a = rng.standard_normal((K, M) if ta else (M, K))
    b = rng.standard_normal((N, K) if tb else (K, N))
    c0, bias = rng.standard_normal((M, N)), rng.standard_normal(N)
    want = (a.T if ta else a) @ (b.T if tb else b)
    a_, b_, bias_ = (launch.cuda.to_device(v) for v in (a, b, bias))
    c = launch.cuda.to_device(c0)
    gemm(c, a_, b_, ta=ta, tb=tb, acc=True, bias=bias_)
    np.testing.assert_allclose(c.copy_to_host(), c0 + want + bias, rtol=1e-12, atol=1e-12)
    c = launch.cuda.to_device(np.full((M, N), np.nan))
    gemm(c, a_, b_, ta=ta, tb=tb)
    np.testing.assert_allclose(c.copy_to_host(), want, rtol=1e-12, atol=1e-12)


def test_gemm_rejects_shapes_that_do_not_chain():
    from charlm.backends.cuda.gemm import gemm

    z = launch.cuda.to_device(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="chain"):
        gemm(launch.cuda.device_array((3, 3)), z, z)


def test_reductions_cover_every_block():
    from charlm.backends.cuda.reduce import NONFINITE, SUM, SUMSQ, total

    x = np.random.default_rng(5).standard_normal(37)  # > BLOCK * MAX_BLOCKS: grid-stride
    d = launch.cuda.to_device(x)
    assert total(d, SUM) == pytest.approx(x.sum(), rel=1e-12)
    assert total(d, SUMSQ) == pytest.approx((x * x).sum(), rel=1e-12)
    assert total(d, NONFINITE) == 0.0
    x[36] = np.inf
    assert np.isnan(total(launch.cuda.to_device(x), NONFINITE))
