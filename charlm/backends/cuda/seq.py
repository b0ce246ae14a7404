"""Sequence plumbing on the device: the CPU backend's ``seq`` functions, same names and semantics
(definitions in ``charlm/backends/cpu/seq.py``), as grid-stride kernels with one thread per output
element; the float data never leaves the device.

    reverse_seq(out, x, lengths)          out[t, b, j] = x[L_b-1-t, b, j] (t < L_b), x[t, b, j] on pads
    concat_last(out, a, b)                out[n, j] = a[n, j] or b[n, j - Fa]
    split_last(da, db, dout)              one kernel over dout's elements, each to da or db
    pool_last(out, x, lengths, nrev)      out[b, j] = x[L_b-1, b, j] (forward halves), x[0, b, j] (last nrev)
    pool_last_backward(dx, dout, lengths, nrev)   dx[t, b, j] = dout[b, j] at that t, else 0
    pool_mean(out, x, lengths)            out[b, j] = (sum over t < L_b of x[t, b, j]) / L_b, ascending t
    pool_mean_backward(dx, dout, lengths) dx[t, b, j] = dout[b, j] * (1 / L_b) (t < L_b), else 0
    take_rows(out, x, idx)                out[i, k] = x[idx[i], k]
    put_rows(out, x, idx)                 out[r, k] = x[i, k] for the last i with idx[i] == r, else 0
    activation(out, x, kind)              relu | sigmoid | tanh; kind is an int code in the kernel
    activation_backward(dx, dout, y, kind)    from the activated output y; dx may be dout itself
    add(out, a, b)                        out = a + b
Trailing axes are flattened on the host (reshape views of contiguous arrays): the kernels see
(T, B, F), (N, F) or flat (n,) arrays. Outputs are overwritten; ``out`` must not overlap an input,
except where stated (activation may run in place, dx may be dout). Pads are not read by
``pool_mean``: a NaN in the padding stays out of the mean (the CPU multiplies it by 0).

Lengths and row indices may be host or device integer arrays (callers pass the device copies a
``Batch`` keeps, int64). A host array is checked first (ValueError for a length outside [1, T],
IndexError for a row outside [-N, N), as NumPy's take) and copied to the device (B or M
integers); a device array is trusted, and the kernels write NaN where a bad length or row would
read out of bounds (put_rows skips such rows). Negative rows count from the end, as in NumPy.

Float constants follow ``launch.f32``. A length becomes a float of the array's dtype without a
dtype-specific kernel by storing it into the thread's own output element and reading it back (an
int-to-float store; the compiler forwards it, nothing extra goes to memory), so float32 kernels
hold no float64 arithmetic (tests/cuda/ptx_check.py checks) and 1 / L_b rounds as on the CPU.

``put_rows`` is a gather too (deterministic, the CPU's last-write-wins for a repeated row): one
kernel records for each output row the last input row that goes there (``cuda.atomic.max`` on an
int64 scratch filled with -1), a second one copies or zeroes every output element. The
alternative, zero-filling ``out`` and scattering x's rows into it, was dropped: its result for a
repeated row depends on scheduling. Also dropped: an in-place ``reverse_seq`` (swapping pairs
t <-> L_b-1-t), since no caller reverses a buffer into itself. Nothing here was timed on a GPU;
these are memory-bound passes over (T, B, F) that the classifier and tagger layers make a few
times per batch, small next to the recurrences, and the char LM calls none of them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import launch
from .elementwise import fill, flat
from .launch import f32, is_device, jit

_NAN = f32(np.nan)
_ONE = f32(1.0)
_ZERO = f32(0.0)
KINDS = {"relu": 0, "sigmoid": 1, "tanh": 2}
RELU, SIGMOID, TANH = 0, 1, 2


@jit
def _reverse_seq(
    out,  # (T, B, F) out
    x,  # (T, B, F)
    lengths,  # (B,) int
):
    T, B, F = out.shape
    for idx in range(cuda.grid(1), T * B * F, cuda.gridsize(1)):
        t = idx // (B * F)
        r = idx - t * (B * F)
        b = r // F
        j = r - b * F
        L = lengths[b]
        if L < 1 or L > T:
            out[t, b, j] = _NAN
        elif t < L:
            out[t, b, j] = x[L - 1 - t, b, j]
        else:
            out[t, b, j] = x[t, b, j]


@jit
def _concat_last(
    out,  # (N, Fa + Fb) out
    a,  # (N, Fa)
    b,  # (N, Fb)
):
    N, F = out.shape
    Fa = a.shape[1]
    for idx in range(cuda.grid(1), N * F, cuda.gridsize(1)):
        n = idx // F
        j = idx - n * F
        if j < Fa:
            out[n, j] = a[n, j]
        else:
            out[n, j] = b[n, j - Fa]


@jit
def _split_last(
    da,  # (N, Fa) out
    db,  # (N, Fb) out
    dout,  # (N, Fa + Fb)
):
    N, F = dout.shape
    Fa = da.shape[1]
    for idx in range(cuda.grid(1), N * F, cuda.gridsize(1)):
        n = idx // F
        j = idx - n * F
        if j < Fa:
            da[n, j] = dout[n, j]
        else:
            db[n, j - Fa] = dout[n, j]


@jit
def _pool_last(
    out,  # (B, F) out
    x,  # (T, B, F)
    lengths,  # (B,) int
    nrev,  # int: the last nrev features are reverse halves, read at t = 0
):
    B, F = out.shape
    T = x.shape[0]
    for idx in range(cuda.grid(1), B * F, cuda.gridsize(1)):
        b = idx // F
        j = idx - b * F
        L = lengths[b]
        if L < 1 or L > T:
            out[b, j] = _NAN
        elif j < F - nrev:
            out[b, j] = x[L - 1, b, j]
        else:
            out[b, j] = x[0, b, j]


@jit
def _pool_last_backward(
    dx,  # (T, B, F) out
    dout,  # (B, F)
    lengths,  # (B,) int
    nrev,  # int
):
    T, B, F = dx.shape
    for idx in range(cuda.grid(1), T * B * F, cuda.gridsize(1)):
        t = idx // (B * F)
        r = idx - t * (B * F)
        b = r // F
        j = r - b * F
        L = lengths[b]
        src = L - 1 if j < F - nrev else 0  # the step the pooled value was read at
        if L < 1 or L > T:
            dx[t, b, j] = _NAN
        elif t == src:
            dx[t, b, j] = dout[b, j]
        else:
            dx[t, b, j] = _ZERO


@jit
def _pool_mean(
    out,  # (B, F) out
    x,  # (T, B, F)
    lengths,  # (B,) int
):
    B, F = out.shape
    T = x.shape[0]
    for idx in range(cuda.grid(1), B * F, cuda.gridsize(1)):
        b = idx // F
        j = idx - b * F
        L = lengths[b]
        if L < 1 or L > T:
            out[b, j] = _NAN
            continue
        s = x[0, b, j]
        for t in range(1, L):
            s += x[t, b, j]
        out[b, j] = L  # L in out's dtype (see the module docstring)
        out[b, j] = s / out[b, j]


@jit
def _pool_mean_backward(
    dx,  # (T, B, F) out
    dout,  # (B, F)
    lengths,  # (B,) int
):
    T, B, F = dx.shape
    for idx in range(cuda.grid(1), T * B * F, cuda.gridsize(1)):
        t = idx // (B * F)
        r = idx - t * (B * F)
        b = r // F
        j = r - b * F
        L = lengths[b]
        if L < 1 or L > T:
            dx[t, b, j] = _NAN
        elif t < L:
            d = dout[b, j]  # read first: no load between the two stores, so the first one folds away
            dx[t, b, j] = L  # L in dx's dtype (see the module docstring)
            dx[t, b, j] = d * (_ONE / dx[t, b, j])
        else:
            dx[t, b, j] = _ZERO


@jit
def _take_rows(
    out,  # (M, F) out
    x,  # (N, F)
    idx,  # (M,) int: rows of x, negative from the end
):
    M, F = out.shape
    N = x.shape[0]
    for e in range(cuda.grid(1), M * F, cuda.gridsize(1)):
        i = e // F
        k = e - i * F
        r = idx[i]
        if r < 0:
            r += N
        if r < 0 or r >= N:
            out[i, k] = _NAN
        else:
            out[i, k] = x[r, k]


@jit
def _row_sources(
    src,  # (N,) int64 in: -1; out: the last i with idx[i] == r (or -1)
    idx,  # (M,) int: rows of out, negative from the end
):
    N = src.shape[0]
    M = idx.shape[0]
    for i in range(cuda.grid(1), M, cuda.gridsize(1)):
        r = idx[i]
        if r < 0:
            r += N
        if r >= 0 and r < N:
            cuda.atomic.max(src, r, i)


@jit
def _put_rows(
    out,  # (N, F) out
    x,  # (M, F)
    src,  # (N,) int64: the row of x for each row of out, -1 for none
):
    N, F = out.shape
    for e in range(cuda.grid(1), N * F, cuda.gridsize(1)):
        r = e // F
        k = e - r * F
        i = src[r]
        if i >= 0:
            out[r, k] = x[i, k]
        else:
            out[r, k] = _ZERO


@jit
def _activation(
    out,  # (n,) out; may be x
    x,  # (n,)
    kind,  # int: RELU, SIGMOID or TANH
):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        v = x[i]
        if kind == RELU:
            out[i] = _ZERO if v < _ZERO else v  # NaN stays NaN, as np.maximum
        elif kind == SIGMOID:
            out[i] = _ONE / (_ONE + math.exp(-v))
        else:
            out[i] = math.tanh(v)


@jit
def _activation_backward(
    dx,  # (n,) out; may be dout
    dout,  # (n,)
    y,  # (n,) the activated output
    kind,  # int: RELU, SIGMOID or TANH
):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        v = y[i]
        if kind == RELU:
            dx[i] = dout[i] * (_ONE if v > _ZERO else _ZERO)
        elif kind == SIGMOID:
            dx[i] = dout[i] * (v * (_ONE - v))
        else:
            dx[i] = dout[i] * (_ONE - v * v)


@jit
def _add(
    out,  # (n,) out; may be a or b
    a,  # (n,)
    b,  # (n,)
):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = a[i] + b[i]


def _lengths(lengths, B: int, T: int):
    """Device lengths (B,): a host array is checked against [1, T] and copied; a device array as is."""
    if is_device(lengths):
        return lengths
    L = np.ascontiguousarray(lengths, dtype=np.int64)
    if L.shape != (B,):
        raise ValueError(f"lengths must be (B,) = ({B},), not {L.shape}")
    if B and (L.min() < 1 or L.max() > T):
        raise ValueError(f"lengths must lie in [1, {T}]")
    return cuda.to_device(L)


def _rows(idx, N: int):
    """Device row indices (M,): a host array is checked against [-N, N) and copied; a device array as is."""
    if is_device(idx):
        return idx
    r = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    if r.size and (r.min() < -N or r.max() >= N):
        raise IndexError(f"row index out of range for {N} rows")
    return cuda.to_device(r)


def _tbf(a):
    """The (T, B, F) view of a contiguous (T, B, ...) array."""
    T, B = a.shape[:2]
    return a.reshape(T, B, a.size // (T * B) if T * B else 0)


def _nf(a):
    """The (N, F) view of a contiguous (..., F) array."""
    F = a.shape[a.ndim - 1]  # (the simulator's shapes refuse negative indices)
    return a.reshape(a.size // F if F else 0, F)


def _launch(kernel, n: int, *args) -> None:
    if n:
        blocks, threads = launch.grid1d(n)
        kernel[blocks, threads](*args)


def reverse_seq(out, x, lengths):
    """out (T, B, ...) = x with each sequence reversed within its length (pads copied); out is not x."""
    if out is x:
        raise ValueError("reverse_seq: out must not be x (the kernel reads x while writing out)")
    T, B = x.shape[:2]
    _launch(_reverse_seq, out.size, _tbf(out), _tbf(x), _lengths(lengths, B, T))


def concat_last(out, a, b):
    """out (..., Fa + Fb) = [a (..., Fa), b (..., Fb)] along the last axis."""
    _launch(_concat_last, out.size, _nf(out), _nf(a), _nf(b))


def split_last(da, db, dout):
    """da (..., Fa), db (..., Fb) = the two parts of dout (..., Fa + Fb)."""
    _launch(_split_last, dout.size, _nf(da), _nf(db), _nf(dout))


def pool_last(out, x, lengths, nrev):
    """out (B, F) = x (T, B, F) at each sequence's last step; the last nrev features at t = 0."""
    T, B = x.shape[:2]
    _launch(_pool_last, out.size, out, x, _lengths(lengths, B, T), int(nrev))


def pool_last_backward(dx, dout, lengths, nrev):
    """dx (T, B, F) = dout (B, F) at the steps pool_last read, 0 elsewhere."""
    T, B = dx.shape[:2]
    _launch(_pool_last_backward, dx.size, dx, dout, _lengths(lengths, B, T), int(nrev))


def pool_mean(out, x, lengths):
    """out (B, F) = the mean of x (T, B, F) over each sequence's real steps."""
    T, B = x.shape[:2]
    _launch(_pool_mean, out.size, out, x, _lengths(lengths, B, T))


def pool_mean_backward(dx, dout, lengths):
    """dx (T, B, F) = dout (B, F) / L_b on real steps, 0 on pads."""
    T, B = dx.shape[:2]
    _launch(_pool_mean_backward, dx.size, dx, dout, _lengths(lengths, B, T))


def take_rows(out, x, idx):
    """out (M, F) = x (N, F) rows idx (M,)."""
    _launch(_take_rows, out.size, _nf(out), _nf(x), _rows(idx, x.shape[0]))


def put_rows(out, x, idx):
    """out (N, F) = 0, then out[idx] = x (M, F); a repeated row gets the last of its rows of x."""
    N = out.shape[0]
    rows = _rows(idx, N)
    src = launch.scratch("seq.put_rows", N, np.int64)  # (N,)
    fill(src, -1)
    _launch(_row_sources, rows.size, src, rows)
    _launch(_put_rows, out.size, _nf(out), _nf(x), src)


def _kind(kind) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown activation {kind!r}")
    return KINDS[kind]


def activation(out, x, kind):
    """out = relu | sigmoid | tanh of x, elementwise; out may be x."""
    _launch(_activation, out.size, flat(out), flat(x), _kind(kind))


def activation_backward(dx, dout, y, kind):
    """dx = dout * act'(from y, the activated output); dx may be dout."""
    _launch(_activation_backward, dx.size, flat(dx), flat(dout), flat(y), _kind(kind))


def add(out, a, b):
    """out = a + b elementwise."""
    _launch(_add, out.size, flat(out), flat(a), flat(b))
