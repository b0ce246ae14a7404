"""Shared-memory tiled GEMM with optional transposes, accumulation and bias; column sums.

    gemm(c, a, b, ta=False, tb=False, acc=False, bias=None)
        c (M, N) = [c +] op(a) @ op(b) [+ bias]     op(a) = a.T if ta, op(b) = b.T if tb
    colsum(out, x, out2=None)    out (O,) = sum over rows of x (N, O); out2 gets a copy

The products the cells and the head need are x @ W^T (tb), dY^T @ X (ta) and dY @ W (plain).
Design: a block of TILE x TILE threads owns a TILE x TILE tile of c, one output per thread;
it walks K in TILE-wide steps, staging a tile of op(a) and of op(b) in shared memory (rows
padded to TILE+1 so the transposed stores hit distinct banks). Global loads are coalesced
in every mode: a transposed operand is read along its contiguous axis and stored transposed.
The variants (ta, tb, acc, bias, dtype, TILE) are compile-time constants of kernels built by a
cached factory, so the inner loop carries no mode branches.

This is the plain textbook kernel: at H=512 it is memory-bound on re-reading W from L2 (M/TILE
times per product). The faster alternatives, not taken here to keep the dependency set small:
register blocking (e.g. 64x64 block tiles, 4x4 outputs per thread, ~3-5x), or cuBLAS through
CuPy. ``bench/bench_cuda.py`` measures what this one does.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from . import launch
from .elementwise import fill
from .launch import jit


@functools.cache
def _kernel(tile: int, ta: bool, tb: bool, acc: bool, bias: bool, dtype: str):
    nbt = numba.from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0)
    shape = (tile, tile + 1)  # a constant tuple: shared array shapes must be compile-time constants

    def gemm_tile(
        c,  # (M, N) out (in/out with acc)
        a,  # (M, K), or (K, M) with ta
        b,  # (K, N), or (N, K) with tb
        v,  # (N,) bias (read only with bias)
    ):
        sa = cuda.shared.array(shape, nbt)  # sa[r, k] = op(a)[row0 + r, k0 + k]
        sb = cuda.shared.array(shape, nbt)  # sb[k, q] = op(b)[k0 + k, col0 + q]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row0 = cuda.blockIdx.y * tile
        col0 = cuda.blockIdx.x * tile
        M = c.shape[0]
        N = c.shape[1]
        K = a.shape[0] if ta else a.shape[1]
        s = zero
        for k0 in range(0, K, tile):
            if ta:  # a is (K, M): consecutive tx read consecutive m
                k = k0 + ty
                r = row0 + tx
                sa[tx, ty] = a[k, r] if (k < K and r < M) else zero
            else:
                k = k0 + tx
                r = row0 + ty
                sa[ty, tx] = a[r, k] if (k < K and r < M) else zero
            if tb:  # b is (N, K): consecutive tx read consecutive k
                k = k0 + tx
                q = col0 + ty
                sb[tx, ty] = b[q, k] if (k < K and q < N) else zero
            else:
                k = k0 + ty
                q = col0 + tx
                sb[ty, tx] = b[k, q] if (k < K and q < N) else zero
            cuda.syncthreads()
            for kk in range(tile):
                s += sa[ty, kk] * sb[kk, tx]
            cuda.syncthreads()
        r = row0 + ty
        q = col0 + tx
        if r < M and q < N:
            if acc:
                s += c[r, q]
            if bias:
                s += v[q]
            c[r, q] = s

    return cuda.jit(gemm_tile)


def gemm(c, a, b, ta=False, tb=False, acc=False, bias=None) -> None:
    """c (M, N) = [c +] op(a) @ op(b) [+ bias (N,)]; c must not overlap a or b."""
    M, N = c.shape
    am, ak = (a.shape[1], a.shape[0]) if ta else a.shape
    bk, bn = (b.shape[1], b.shape[0]) if tb else b.shape
    if (am, ak, bn) != (M, bk, N):
        raise ValueError(f"gemm: shapes do not chain: c {c.shape}, a {a.shape}{'^T' * ta}, b {b.shape}{'^T' * tb}")
    if M == 0 or N == 0:
        return
    v = bias if bias is not None else launch.scratch("gemm.nobias", 1, c.dtype)
    grid, block = launch.grid2d(M, N)
    _kernel(launch.TILE, bool(ta), bool(tb), bool(acc), bias is not None, c.dtype.str)[grid, block](c, a, b, v)


@jit
def _colsum(
    out,  # (O,) out
    out2,  # (O,) out: a copy of out (when both bias gradients are equal)
    x,  # (N, O)
    both,  # bool: write out2 too
):
    N, O = x.shape
    for k in range(cuda.grid(1), O, cuda.gridsize(1)):
        s = x[0, k]  # N >= 1 (the wrapper fills zeros otherwise)
        for n in range(1, N):
            s += x[n, k]
        out[k] = s
        if both:
            out2[k] = s


def colsum(out, x, out2=None) -> None:
    """out (O,) = x (N, O) summed over rows (deterministic, ascending n); out2 (O,) gets the same."""
    if x.shape[0] == 0:
        for o in (out, out2):
            if o is not None:
                fill(o, 0)
        return
    blocks, threads = launch.grid1d(out.size)
    _colsum[blocks, threads](out, out2 if out2 is not None else out, x, out2 is not None)
