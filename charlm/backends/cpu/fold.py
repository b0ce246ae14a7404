"""Layer 0's embedding folded into its input projection (the char LM's Embedding -> Recurrent).

With ids (T, B) and the embedding table emb (V, E), layer 0's input-side pre-activations are
    z[t, b] = emb[ids[t, b]] @ W_ih^T  =  tab[ids[t, b]],   tab = emb @ W_ih^T   # (V, G*H)
so the forward computes the (V, G*H) table once per window (V*E*G*H multiply-adds instead of
T*B*E*G*H) and gathers its rows. Backward, with dz the input-side dLoss/dz (T, B, G*H):
    dtab[v] = sum of dz[t, b] over the positions with ids[t, b] = v             # (V, G*H)
    dW_ih = dtab^T @ emb      (G*H, E)         demb = dtab @ W_ih      (V, E)
which replaces the two T*B-row GEMMs (dx and dW_ih) and the embedding's own scatter-add of dx.
At S (1x128, E 64, B32 T64) that removes about 30% of a training step's multiply-adds. Every
table stays in the cells' permuted gate order (``recurrent``); results equal the unfolded path
up to float32 summation order (tested against it and in float64).

    Folded(ids, emb, tab, dtab, demb)          what a cell's forward/backward take as x
    table(tab, emb, ih)                        tab = emb @ wp_ih^T (ih: Packed.ih)
    gather(z, ids, tab, nt)                    z[t, b] = tab[ids[t, b]]
    scatter(dtab, ids, dz, nt)                 dtab = per-id sums of dz (threads split the columns)
    input_grads(dwp_ih, demb, folded, pdx)     dW_ih (permuted) and demb from dtab
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from . import tile
from .embed import _check_ids
from .jit import kernel


class Folded(NamedTuple):
    """A cell's input given as ids and the embedding table (CPU cells accept it for ``x``)."""

    ids: np.ndarray  # (T, B) int32
    emb: np.ndarray  # (V, E) embedding weights
    tab: np.ndarray  # (V, G*H) scratch: emb @ W_ih^T in permuted gate order
    dtab: np.ndarray  # (V, G*H) scratch: per-id sums of the input-side dz
    demb: np.ndarray  # (V, E) out of backward: dLoss/demb


def alloc(V, E, GH, dtype=np.float32):
    """The scratch of a Folded for vocabulary V, embedding E and G*H gate columns (ids set per call)."""
    z = lambda *s: np.zeros(s, dtype)
    return z(V, GH), z(V, GH), z(V, E)


@kernel
def table(
    tab,  # (V, G*H) out
    emb,  # (V, E)
    ih,  # Packed.ih: panels of wp_ih^T (E x G*H)
):
    V, GH = tab.shape
    E = emb.shape[1]
    tile.gemm_packed(False, (V, GH, E), (emb, 0, E), (ih, 0), 0, (tab, 0, GH))


@kernel(parallel=True)
def gather(
    z,  # (T, B, G*H) out
    ids,  # (T, B) int32
    tab,  # (V, G*H)
    nt,  # threads
):
    T, B, GH = z.shape
    _check_ids(ids, tab.shape[0])
    N = T * B
    nc = min(nt, N)
    for c in prange(nc):
        for n in range(c * N // nc, (c + 1) * N // nc):
            t, b = n // B, n % B
            src, dst = tab[ids[t, b]], z[t, b]  # (G*H,)
            for j in range(GH):
                dst[j] = src[j]


@kernel(parallel=True)
def scatter(
    dtab,  # (V, G*H) out (overwritten)
    ids,  # (T, B) int32
    dz,  # (T, B, G*H)
    nt,  # threads: each sums its own block of columns (no two threads write one entry)
):
    T, B, GH = dz.shape
    V = dtab.shape[0]
    nc = min(nt, GH)
    for c in prange(nc):
        j0 = c * GH // nc
        j1 = (c + 1) * GH // nc
        w = j1 - j0
        for v in range(V):
            dtab[v, j0:j1] = 0
        for t in range(T):
            for b in range(B):
                # this block's columns as 1-D slices indexed from 0: 5x faster than indexing the
                # whole rows from j0 (S, 2 threads: 0.12 against 0.63 ms a window, the same sums)
                row, d = dtab[ids[t, b], j0:j1], dz[t, b, j0:j1]  # (w,)
                for j in range(w):
                    row[j] += d[j]


@kernel
def input_grads(
    dwp_ih,  # (G*H, E) out: dW_ih in permuted order
    demb,  # (V, E) out
    dtab,  # (V, G*H) from ``scatter``
    emb,  # (V, E)
    pdx,  # Packed.dx: panels of wp_ih (G*H x E)
):
    V, GH = dtab.shape
    E = emb.shape[1]
    tile.gemm(True, (GH, E, V), (dtab, 0, GH), (emb, 0, E), 0, (dwp_ih, 0, E))
    tile.gemm_packed(False, (V, E, GH), (dtab, 0, GH), (pdx, 0), 0, (demb, 0, E))
