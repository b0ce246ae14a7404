"""The CUDA sequence plumbing (charlm/backends/cuda/seq.py) against the CPU's ``seq`` module: every
op on random inputs with ragged lengths (1 and T among them), float32 and float64, lengths and
rows given as host or device arrays; no op copies float data between host and device."""

from __future__ import annotations

import numpy as np
import pytest
from cudahelp import nan_like

from charlm.backends import get
from charlm.backends.cpu import seq as cpu

T, B, FA, FB = 5, 4, 3, 2  # T*B*F = 100 > 8 threads (conftest's launches): the grid-stride loops run
LENS = np.array([1, T, 3, 2], np.int64)
DTYPES = [np.float32, np.float64]
OPS = ("reverse_seq", "concat_last", "split_last", "pool_last", "pool_last_backward", "pool_mean",
       "pool_mean_backward", "take_rows", "put_rows", "activation", "activation_backward", "add")


@pytest.fixture
def gpu():
    return get("cuda")


def tol(dtype):
    return dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)


def rand(dtype, *shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(dtype)


def rows():
    """(M,) flat rows of the real positions of LENS in a (T, B) window, as the step heads take them."""
    return np.flatnonzero((np.arange(T)[:, None] < LENS[None, :]).reshape(-1)).astype(np.int64)


def cases(dtype, index_on_device=False, gpu=None):
    """op name -> (host inputs, output shapes, extra args): each op's call as ``op(*outs, *inputs, *extra)``."""
    F = FA + FB
    x, a, b = rand(dtype, T, B, F), rand(dtype, T, B, FA, seed=1), rand(dtype, T, B, FB, seed=2)
    pooled = rand(dtype, B, F, seed=3)
    flat, act = rand(dtype, T * B, F, seed=4), rand(dtype, 7, 3, seed=5)
    lens, r = LENS, rows()
    if index_on_device:
        lens, r = gpu.to_device(LENS), gpu.to_device(r)
    sig = 1 / (1 + np.exp(-act))
    return {
        "reverse_seq": ([x], [(T, B, F)], [lens]),
        "concat_last": ([a, b], [(T, B, F)], []),
        "split_last": ([x], [(T, B, FA), (T, B, FB)], []),
        "pool_last": ([x], [(B, F)], [lens, FB]),
        "pool_last_backward": ([pooled], [(T, B, F)], [lens, FB]),
        "pool_mean": ([x], [(B, F)], [lens]),
        "pool_mean_backward": ([pooled], [(T, B, F)], [lens]),
        "take_rows": ([flat], [(rows().size, F)], [r]),
        "put_rows": ([flat[:rows().size]], [(T * B, F)], [r]),
        "activation": ([act], [act.shape], ["sigmoid"]),
        "activation_backward": ([act, sig], [act.shape], ["sigmoid"]),
        "add": ([a, rand(dtype, T, B, FA, seed=6)], [a.shape], []),
    }


def run_cpu(name, ins, shapes, extra, dtype):
    outs = [np.full(s, np.nan, dtype) for s in shapes]
    getattr(cpu, name)(*outs, *ins, *extra)
    return outs


def run_gpu(gpu, name, ins, shapes, extra, dtype):
    outs = [nan_like(gpu, np.zeros(s, dtype)) for s in shapes]
    getattr(gpu, name)(*outs, *[gpu.to_device(v) for v in ins], *extra)
    return outs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("name", OPS)
def test_op_matches_cpu(gpu, name, where, dtype):
    ins, shapes, extra = cases(dtype, where == "device", gpu)[name]
    host_extra = [gpu.to_host(e) if hasattr(e, "copy_to_host") else e for e in extra]
    want = run_cpu(name, ins, shapes, host_extra, dtype)
    got = run_gpu(gpu, name, ins, shapes, extra, dtype)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(gpu.to_host(g), w, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["relu", "sigmoid", "tanh"])
def test_activations_in_place(gpu, kind, dtype):
    x = rand(dtype, 6, 5, seed=7)
    x[0, 0] = 0.0
    y = np.empty_like(x)
    cpu.activation(y, x, kind)
    d = gpu.to_device(x)
    gpu.activation(d, d, kind)  # the Dense layer activates its own output buffer
    np.testing.assert_allclose(gpu.to_host(d), y, **tol(dtype))
    dout = rand(dtype, 6, 5, seed=8)
    dx = np.empty_like(dout)
    cpu.activation_backward(dx, dout, y, kind)
    dd = gpu.to_device(dout)
    gpu.activation_backward(dd, dd, gpu.to_device(y), kind)  # dx is dout
    np.testing.assert_allclose(gpu.to_host(dd), dx, **tol(dtype))


@pytest.mark.parametrize("nrev", [0, 2, FA + FB])
def test_pool_last_reverse_halves(gpu, nrev):
    x = rand(np.float64, T, B, FA + FB, seed=9)
    want = np.full((B, FA + FB), np.nan)
    cpu.pool_last(want, x, LENS, nrev)
    out = nan_like(gpu, want)
    gpu.pool_last(out, gpu.to_device(x), LENS, nrev)
    np.testing.assert_array_equal(gpu.to_host(out), want)
    dout = rand(np.float64, B, FA + FB, seed=10)
    want = np.full(x.shape, np.nan)
    cpu.pool_last_backward(want, dout, LENS, nrev)
    dx = nan_like(gpu, want)
    gpu.pool_last_backward(dx, gpu.to_device(dout), LENS, nrev)
    np.testing.assert_array_equal(gpu.to_host(dx), want)


def test_rows_repeated_and_negative(gpu):
    x = rand(np.float64, 6, 3, seed=11)
    idx = np.array([4, -1, 0, 4, 2], np.int64)  # row 4 twice: the last write wins, as NumPy's
    vals = rand(np.float64, idx.size, 3, seed=12)
    for where in ("host", "device"):
        i = idx if where == "host" else gpu.to_device(idx)
        out = nan_like(gpu, vals)
        gpu.take_rows(out, gpu.to_device(x), i)
        np.testing.assert_array_equal(gpu.to_host(out), x[idx])
        want = np.full(x.shape, np.nan)
        cpu.put_rows(want, vals, idx)
        put = nan_like(gpu, x)
        gpu.put_rows(put, gpu.to_device(vals), i)
        np.testing.assert_array_equal(gpu.to_host(put), want)


def test_bad_lengths_rows_and_kinds(gpu):
    x = gpu.to_device(rand(np.float32, T, B, 2))
    out = gpu.zeros((T, B, 2))
    for bad in (np.array([0, 1, 1, 1]), np.array([1, T + 1, 1, 1]), np.array([1, 2, 3])):
        with pytest.raises(ValueError, match="lengths"):
            gpu.reverse_seq(out, x, bad)
    with pytest.raises(IndexError):
        gpu.take_rows(gpu.zeros((2, 2)), x.reshape(T * B, 2), np.array([0, T * B]))
    with pytest.raises(ValueError, match="activation"):
        gpu.activation(out, x, "gelu")
    # device lengths are trusted: a bad one gives NaN there, never an out-of-bounds read
    gpu.pool_mean(pooled := gpu.zeros((B, 2)), x, gpu.to_device(np.array([1, T + 3, 0, 2], np.int64)))
    got = gpu.to_host(pooled)
    assert np.isnan(got[1:3]).all() and np.isfinite(got[[0, 3]]).all()


def test_no_float_data_crosses_the_host(gpu):
    """Every op with its float inputs and outputs on the device copies no float array to or from the
    host (lengths and rows may go up: they are B or M integers). The host round trip fails here."""
    from numba import cuda

    dtype = np.float32
    prepared = {}
    for where in ("host", "device"):
        for name, (ins, shapes, extra) in cases(dtype, where == "device", gpu).items():
            outs = [gpu.zeros(s, dtype) for s in shapes]
            prepared[name, where] = (outs, [gpu.to_device(v) for v in ins], extra)
    cls = type(gpu.zeros(1))

    def refuse(what, orig):
        def guarded(*arrays, **kw):
            if any(np.dtype(getattr(v, "dtype", np.int64)).kind == "f" for v in arrays):
                raise AssertionError(f"float data through the host: {what}")
            return orig(*arrays, **kw)
        return guarded

    with pytest.MonkeyPatch.context() as mp:  # its own: undoing must leave conftest's patches alone
        mp.setattr(cls, "copy_to_host", refuse("copy_to_host", cls.copy_to_host))
        mp.setattr(cls, "copy_to_device", refuse("copy_to_device", cls.copy_to_device))
        mp.setattr(cuda, "to_device", refuse("to_device", cuda.to_device))
        for (name, _), (outs, ins, extra) in prepared.items():
            getattr(gpu, name)(*outs, *ins, *extra)
    assert {n for n, _ in prepared} == set(OPS)
