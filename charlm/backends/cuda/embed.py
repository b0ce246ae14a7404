"""Embedding lookup, its gradient and one-hot encoding on the device (contract as on the CPU).

    embed_forward(out, ids, weight)      out[t, b] = weight[ids[t, b]]          one thread per (n, k)
    embed_backward(dweight, ids, dout)   dweight[v] = sum of dout[t, b] with ids[t, b] == v
    onehot(out, ids)                     out[t, b, v] = (ids[t, b] == v)          one thread per (n, v)

The gradient is a gather, not an atomic scatter: one thread per (v, k) scans the N ids in
order, so the sums are deterministic and equal the CPU's bit for bit (N*V*E comparisons,
cheap next to the GEMMs for character vocabularies).
ids may be host arrays (checked, then copied: ValueError on an id outside [0, V), as on the
CPU) or device arrays (then an out-of-range id yields NaN rows instead of an out-of-bounds read).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import launch
from .launch import f32, ids_on_device, jit

_NAN = f32(np.nan)
_ONE = f32(1.0)
_ZERO = f32(0.0)


@jit
def _embed_forward(
    out,  # (N, E) out
    ids,  # (N,) int32
    weight,  # (V, E)
):
    N, E = out.shape
    V = weight.shape[0]
    for idx in range(cuda.grid(1), N * E, cuda.gridsize(1)):
        n = idx // E
        k = idx - n * E
        v = ids[n]
        if v >= 0 and v < V:
            out[n, k] = weight[v, k]
        else:
            out[n, k] = _NAN


@jit
def _embed_backward(
    dweight,  # (V, E) out (overwritten)
    ids,  # (N,) int32
    dout,  # (N, E)
):
    V, E = dweight.shape
    N = ids.shape[0]
    for idx in range(cuda.grid(1), V * E, cuda.gridsize(1)):
        v = idx // E
        k = idx - v * E
        s = _ZERO  # unifies to float64 for float64 arrays
        for n in range(N):
            if ids[n] == v:
                s += dout[n, k]
        dweight[v, k] = s


@jit
def _onehot(
    out,  # (N, V) out (overwritten)
    ids,  # (N,) int32
):
    N, V = out.shape
    for idx in range(cuda.grid(1), N * V, cuda.gridsize(1)):
        n = idx // V
        v = idx - n * V
        i = ids[n]
        if i < 0 or i >= V:
            out[n, v] = _NAN
        else:
            out[n, v] = _ONE if i == v else _ZERO


def _flat_ids(ids, V):
    T, B = ids.shape
    return ids_on_device(ids, V, "character").reshape(T * B)


def embed_forward(out, ids, weight):
    """out (T, B, E) = weight (V, E) rows of ids (T, B)."""
    T, B, E = out.shape
    blocks, threads = launch.grid1d(T * B * E)
    _embed_forward[blocks, threads](out.reshape(T * B, E), _flat_ids(ids, weight.shape[0]), weight)


def embed_backward(dweight, ids, dout):
    """dweight (V, E) = scatter-sum of dout (T, B, E) by ids (T, B); overwritten."""
    V, E = dweight.shape
    T, B = ids.shape
    blocks, threads = launch.grid1d(V * E)
    _embed_backward[blocks, threads](dweight, _flat_ids(ids, V), dout.reshape(T * B, E))


def onehot(out, ids):
    """out (T, B, V) = one-hot rows of ids (T, B); overwritten."""
    T, B, V = out.shape
    blocks, threads = launch.grid1d(T * B * V)
    _onehot[blocks, threads](out.reshape(T * B, V), _flat_ids(ids, V))
