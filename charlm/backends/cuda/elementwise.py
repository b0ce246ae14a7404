"""Elementwise device kernels on whole (contiguous) arrays: fill, copy, multiply.

Each is a 1-D grid-stride loop over the flattened array (``launch.grid1d``), dtype-generic.
"""

from __future__ import annotations

from numba import cuda

from . import launch
from .launch import jit


@jit
def _fill(
    a,  # (n,) out
    value,  # scalar of a's dtype
):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


@jit
def _copy(
    dst,  # (n,) out
    src,  # (n,)
):
    for i in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[i] = src[i]


@jit
def _mul(
    out,  # (n,) out; may be a or b
    a,  # (n,)
    b,  # (n,)
):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = a[i] * b[i]


def flat(a):
    """The 1-D view of a contiguous device array."""
    return a.reshape(a.size)


def fill(a, value) -> None:
    """a[...] = value."""
    if a.size:
        blocks, threads = launch.grid1d(a.size)
        _fill[blocks, threads](flat(a), a.dtype.type(value))


def copy(dst, src) -> None:
    """dst[...] = src (same shape)."""
    if dst.shape != src.shape:
        raise ValueError(f"copy: shapes differ: {dst.shape} vs {src.shape}")
    if dst.size:
        blocks, threads = launch.grid1d(dst.size)
        _copy[blocks, threads](flat(dst), flat(src))


def mul(out, a, b) -> None:
    """out = a * b elementwise (dropout masks); out may be a or b."""
    if not (out.shape == a.shape == b.shape):
        raise ValueError(f"mul: shapes differ: {out.shape}, {a.shape}, {b.shape}")
    if out.size:
        blocks, threads = launch.grid1d(out.size)
        _mul[blocks, threads](flat(out), flat(a), flat(b))


def zeros(shape, dtype):
    a = cuda.device_array(shape, dtype)
    fill(a, 0)
    return a
