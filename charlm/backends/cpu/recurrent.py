"""Pieces shared by the rnn, lstm and gru kernels: how they use the threads, the gate-row
permutation, the input projection and the weight-gradient work of the backward pass.

Threads (Numba's pool is the one owner of the cores; BLAS runs single-threaded inside it):

Forward, unit split: the recurrent loop splits the H hidden units into nc = min(threads, H)
contiguous chunks, one per thread, with one fork-join per time step (~1 us with the omp threading
layer). Thread k multiplies ALL B rows of h_{t-1} by the rows of W_hh that produce its units'
gates, so its block of W_hh (G*H*H/nc floats) stays in its L2 across the steps. To make that
weight block contiguous, the G gate rows of each chunk are stored together: the permuted index of
(gate g, unit u of chunk k = [u0, u1)) is G*u0 + g*(u1-u0) + (u-u0). ``permute_rows`` copies
w_ih, w_hh (and the biases) into that order once per window; the gate buffers of the cells use
it throughout.

Row split (``row_split``), when the whole W_hh fits in one core's L2 and B gives every
thread two row tiles: the rows are cut into nr chunks (up to ``ROW_CHUNKS`` per thread, each at
least ``ROW_TILES`` row tiles), and each thread takes chunks in turn (``take``: an atomic counter)
and runs a chunk's rows through all T steps (the unit chunks in turn, same permutation and
panels), with one fork-join per window instead of one per step; the backward likewise. The
products keep their results bit for bit (each row's sums run in the same order); only the
bias-gradient sums are added per row chunk first (nr follows from B and the ceiling of the thread
count, and which thread takes a chunk changes nothing, so they do not depend on the count the
governor picks or on the scheduler). Taking chunks in turn is for a busy machine: beside another
process one of our threads shares its core, and with one chunk per thread the window ended when
that thread's half did, as late as on one thread. On a 2-core AMD EPYC Zen 4 beside one busy
process (bench_train workers alternating, 11 reps, M lstm training, ratio to charlm pinned to 1
thread): 8 chunks 1.017 and 1.028, 4 chunks 0.995, 2 chunks taken in turn 0.993, 2 fixed chunks
(before) 0.990 and 0.988; the LSTM forward loop alone 33.7 ms with 8 chunks against 39.5 ms with
2 and 39.2 ms on one thread. Quiet, 8 chunks against 2: M lstm training 0.991 and 1.030, S 0.985,
M gru 0.991, M lstm evaluation 1.033 (noise); cold compile unchanged (lstm_backward 3.32-3.43 s
against 3.34-3.81, lstm_forward 2.88-3.01 against 2.92-3.02). Measured at first on a quiet 2-core
Xeon (AVX-512), 2 threads, median of interleaved reps in one process, row / unit split:

    LSTM forward loop alone (a prototype of this loop in one script; "one thread" below is
        Numba's pool set to 1): S 1x128 B32 T64 3.33 / 4.40 ms, 256 B64 T100 30.1 / 32.7 ms,
        512 B64 T100 105.9 / 99.0 ms (W_hh 4 MB: that one keeps the unit split); beside one busy
        process S 6.6 / 31.7 ms and 256 53 / 94 ms, against 5.6-6.0 and 49-54 ms on one thread
    whole training step (bench_train configs, two sessions of A/Bs minutes apart): S lstm
        1.15-1.21x, M lstm 1.06-1.11x, M gru 1.04-1.21x, M rnn 1.04x; M lstm evaluation windows
        1.15-1.45x; L lstm (unit split both ways) 1.00x
    cold compile of a cell (lstm 2x12, CPU): 28.7-28.8 s against 25.4-27.7 s before the row split
        (interleaved; a second loop nest instead of ``work`` cost 2-6 s); the backward's share of
        that went with its bias sums' np.zeros moved to the caller (lstm_backward 3.7-4.2 s against
        3.5-3.9 before the row split, on a Zen 4)

The threshold was half an L2 at first (measured on the Xeon's 2 MB). On a quiet 2-core AMD EPYC
Zen 4 (1 MB L2, 32 MB L3), whole steps with the row split forced against the unit split, median
of 21 interleaved reps: M gru (W_hh 768 KB) 1.077x (0.99-1.37), M lstm (1 MB) 1.021x (0.95-1.21),
M lstm evaluation windows 1.089x (15 reps, 1.04-1.45): W_hh up to the whole L2 pays, so the
threshold is one L2.

The older note that a batch split's B/nc-row GEMMs ran ~20% slower no longer holds with the
tile's L1-sized K block: 64x256 @ 256x512 (the unit split's share at M) and 32x256 @ 256x1024
(the row split's) ran at 107-111 and 102-107 GFLOP/s.

Backward, unit split: one fork-join per step (dh_t for a chunk's units needs dz_{t+1} of every
chunk). Then, either way, ``weight_grads`` gives each thread its rows of dx and its chunk's rows of
dW_ih and dW_hh (one GEMM each over all T*B rows; dW reads x or h in K blocks that
``tile.gemm_kpacked`` packs into the thread's ``Packed.wg``), written back in PyTorch's order. Measured
alternative, dropped: the loop on one thread with the weight gradients of finished blocks of
steps computed beside it (no per-step barrier) was 2% faster at S, even at M and 12% slower at L,
where the per-step GEMMs of the split loop are already as fast as the whole-width ones.

    permute_rows(dst, src, G, nc)   dst (G*H, C) = rows of src (G*H, C) in chunk order
    project(z, x, w, nt)            z (T, B, G*H) = x (T, B, I) @ w^T for all T*B rows (split over rows)
    weight_grads(...)               after BPTT: dx = dzi @ wp_ih, dw_ih = dzi^T x, dw_hh = dzh^T h_prev,
                                    db_* from the loop's per-column sums, all in PyTorch's order

``nt``/``nc`` come from Python (``threads.width()``: Numba's thread count, or the ceiling while the
governor runs a block on fewer threads): numba.get_num_threads() inside a kernel makes the kernel
uncacheable.

Every product runs through ``tile`` (packed weight panels), one-row products (B = 1: `charlm eval
--file`, score, inspect) too: a 1 x NR tile streams the packed panels, so no GEMV path is needed.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import fold, tile
from .jit import kernel
from .threads import width


def split(H: int) -> int:
    """How many unit chunks the forward loop uses for H hidden units (one per thread)."""
    return max(1, min(width(), H))


# Row split (module docstring): W_hh at most this share of one core's L2; chunks of at least
# ROW_TILES row tiles, at most ROW_CHUNKS per thread.
L2_SHARE = 1.0
ROW_TILES = 2
ROW_CHUNKS = 4


@functools.cache
def l2_bytes() -> int:
    """One core's L2 (Linux sysfs), else 1 MB."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("index"))
    except OSError:
        names = []
    for name in names:
        try:
            with open(os.path.join(base, name, "level")) as f:
                if f.read(16).strip() != "2":
                    continue
            with open(os.path.join(base, name, "size")) as f:
                txt = f.read(32).strip().upper()  # e.g. "2048K"
            return int(txt.rstrip("KMB")) * {"K": 1 << 10, "M": 1 << 20}.get(txt[-1:], 1)
        except (OSError, ValueError):
            continue
    return 1 << 20


def row_split(B: int, H: int, G: int, itemsize: int = 4) -> int:
    """Row chunks of the recurrent loops: up to ``ROW_CHUNKS`` per thread of width() (the threads
    take the chunks in turn and run each one's rows through all T steps, one fork-join per window)
    when W_hh fits ``L2_SHARE`` of an L2 and B gives every thread ``ROW_TILES`` row tiles; else 1
    (the unit split, one fork-join per step). Chunks of at least ``ROW_TILES`` row tiles each."""
    nt = width()
    tiles = ROW_TILES * tile.MR
    if nt < 2 or B < tiles * nt or G * H * H * itemsize > L2_SHARE * l2_bytes():
        return 1
    return max(nt, min(B // tiles, ROW_CHUNKS * nt))


def schedule(nc: int, nr: int, T: int):
    """The ``split`` a recurrent kernel takes: (nc unit chunks, nr row chunks, workers, turns).
    Workers: width() (the ceiling, so which chunk a worker takes never changes a result); turns:
    one counter per outer step from which the workers take their parts (``take``), zeroed here."""
    return (nc, nr, width(), np.zeros(max(T, 1), np.int64))


@kernel
def loops(split, T):
    """(outer steps, parts, workers) of a recurrent loop for split = ``schedule(nc, nr, T)``: the
    unit split forks and joins nc parts at each of T steps, the row split nr row chunks once; the
    workers take parts in turn (``take``) until none is left."""
    nc, nr, nw = split[0], split[1], split[2]
    return (T, nc, min(nw, nc)) if nr == 1 else (1, nr, min(nw, nr))


@intrinsic
def _fetch_add(typingctx, counters, i):
    """counters[i] += 1 atomically; returns the value before (LLVM ``atomicrmw add``)."""
    sig = types.int64(counters, i)

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, [args[1]])
        return builder.atomic_rmw("add", ptr, context.get_constant(types.int64, 1), "monotonic")

    return sig, codegen


@kernel
def take(split, s):
    """The next part of outer step s for the worker that asks (parts past the last mean: done)."""
    return _fetch_add(split[3], s)


@kernel
def work(split, s, q, T, B):
    """What part q of outer step s runs: steps [t0, t1), unit chunks [k0, k1), rows [b0, b1), and
    its row chunk r (0 on the unit split). Both splits go through one parallel loop, so each kernel
    compiles one (a second one added 2-6 s of CPU to a cell's cold compile)."""
    nc, nr = split[0], split[1]
    q = np.int64(q)
    s = np.int64(s)
    if nr > 1:
        return (np.int64(0), np.int64(T)), (np.int64(0), np.int64(nc)), (q * B // nr, (q + 1) * B // nr), q
    return (s, s + 1), (q, q + 1), (np.int64(0), np.int64(B)), np.int64(0)


@kernel
def permute_rows(
    dst,  # (G*H, C) out: rows in chunk order
    src,  # (G*H, C) rows in PyTorch's gate-block order
    G,  # gates
    nc,  # unit chunks
):
    GH, C = src.shape
    H = GH // G
    for k in range(nc):
        u0 = k * H // nc
        u1 = (k + 1) * H // nc
        hk = u1 - u0
        for g in range(G):
            for u in range(hk):
                d = dst[G * u0 + g * hk + u]  # (C,)
                s = src[g * H + u0 + u]  # (C,)
                for col in range(C):
                    d[col] = s[col]


class Packed(NamedTuple):
    """The window's weights as the tile GEMM reads them (``tile.pack`` panels), packed once per
    forward for ``nc`` unit chunks. Floats: about 2 G*H*(I + H), plus up to NR columns of padding
    per panel set."""

    nc: int
    ih: np.ndarray  # panels of wp_ih^T (I x G*H): the input projection's right-hand side
    dx: np.ndarray  # panels of wp_ih (G*H x I): dx's right-hand side
    hh: np.ndarray  # nc blocks of strides[0]: chunk k's panels of wp_hh[its G*hk rows]^T (H x G*hk): the step
    dh: np.ndarray  # nc blocks of strides[1]: chunk k's panels of wp_hh[:, its hk units] (G*H x hk): dh_t
    strides: np.ndarray  # (2,) int64
    wg: np.ndarray  # nc blocks of wg_stride(I, H): each thread's packed K block of x or h (``weight_grads``)


def wg_stride(I, H):
    """Floats of one thread's block of ``Packed.wg``."""
    return tile.panels(tile.KW, max(I, H))


def packed(holder, nc, G, I, H, dtype):
    """The Packed buffers in ``holder`` (a one-element list kept in the workspace), (re)made for nc."""
    pk = holder[0]
    if pk is None or pk.nc != nc:
        hk = -(-H // nc)  # the largest chunk
        strides = np.array([tile.panels(H, G * hk), tile.panels(G * H, hk)], np.int64)
        z = lambda n: np.zeros(n, dtype)
        pk = holder[0] = Packed(nc, z(tile.panels(I, G * H)), z(tile.panels(G * H, I)),
                                z(nc * strides[0]), z(nc * strides[1]), strides, z(nc * wg_stride(I, H)))
    return pk


@kernel
def pack_weights(
    ih, dx, hh, dh,  # out: Packed's buffers
    strides,  # Packed.strides
    wp_ih,  # (G*H, I) permuted w_ih
    wp_hh,  # (G*H, H) permuted w_hh
    G,  # gates
    nc,  # unit chunks
):
    GH, I = wp_ih.shape
    H = GH // G
    a = wp_ih.reshape(-1)
    b = wp_hh.reshape(-1)
    tile.pack(ih, 0, a, 0, I, I, GH, True)
    tile.pack(dx, 0, a, 0, I, GH, I, False)
    for k in range(nc):
        u0 = k * H // nc
        hk = (k + 1) * H // nc - u0
        tile.pack(hh, k * strides[0], b, G * u0 * H, H, H, G * hk, True)
        tile.pack(dh, k * strides[1], b, u0, H, GH, hk, False)


@kernel(parallel=True)
def project(
    z,  # (T, B, G*H) out
    x,  # (T, B, I)
    ih,  # Packed.ih: panels of wp_ih^T
    nt,  # threads
):
    T, B, GH = z.shape
    I = x.shape[2]
    N = T * B
    nc = min(nt, N)
    for c in prange(nc):
        n0 = c * N // nc
        n1 = (c + 1) * N // nc
        tile.gemm_packed(False, (n1 - n0, GH, I), (x, n0 * I, I), (ih, 0), 0, (z, n0 * GH, GH))


@kernel(parallel=True)
def weight_grads(
    g,  # out, PyTorch order: dw_ih (G*H, I), dw_hh (G*H, H), db_ih (G*H,), db_hh (G*H,)
    dx,  # (T, B, I) out
    dwp,  # scratch: dwp_ih (G*H, I), dwp_hh (G*H, H): dw_* in permuted order (dw_* themselves when G == 1)
    dz,  # dzi, dzh (T, B, G*H): permuted dLoss/d(input-side, hidden-side pre-activations) (dzh is dzi
    #      for rnn/lstm)
    dbs,  # (2, G*H) permuted sums of dzi (row 0) and dzh (row 1) over all T*B rows
    x,  # (T, B, I) the layer's input
    h,  # (T+1, B, H) h[0] = h0, h[t+1] = h_t: rows 0..T-1 are the previous states
    pks,  # (Packed.dx: panels of wp_ih, Packed.wg, wg_stride(I, H))
    G,  # gates
    nc,  # unit chunks used by the loop (the permutation): one per thread
    with_x,  # False: dx and dwp_ih are the caller's (a folded embedding, see ``fold``); x is not read
):
    dw_ih, dw_hh, db_ih, db_hh = g
    dwp_ih, dwp_hh = dwp
    pdx, pwg, wstride = pks
    dzi, dzh = dz
    T, B, GH = dzi.shape
    I = dw_ih.shape[1]
    H = GH // G
    N = T * B
    for k in prange(nc):  # chunk k: rows of dx, and its G*hk permuted rows of dW (then in PyTorch order)
        n0 = k * N // nc
        n1 = (k + 1) * N // nc
        if with_x:
            tile.gemm_packed(False, (n1 - n0, I, GH), (dzi, n0 * GH, GH), (pdx, 0), 0, (dx, n0 * I, I))
        u0 = k * H // nc
        u1 = (k + 1) * H // nc
        hk = u1 - u0
        p0 = G * u0
        if with_x:
            tile.gemm_kpacked(True, (G * hk, I, N), (dzi, p0, GH), (x, 0, I), (dwp_ih, p0 * I, I), (pwg, k * wstride))
        tile.gemm_kpacked(True, (G * hk, H, N), (dzh, p0, GH), (h, 0, H), (dwp_hh, p0 * H, H), (pwg, k * wstride))
        for g in range(G):
            for u in range(hk):
                src = p0 + g * hk + u
                dst = g * H + u0 + u
                db_ih[dst] = dbs[0, src]
                db_hh[dst] = dbs[1, src]
                if G == 1:  # the permutation is the identity: rnn passes dw_* as dwp_*
                    continue
                a, b = dw_ih[dst], dwp_ih[src]  # (I,)
                for col in range(I):
                    a[col] = b[col]
                a, b = dw_hh[dst], dwp_hh[src]  # (H,)
                for col in range(H):
                    a[col] = b[col]


def input_projection(z, x, pk, nt):
    """z (T, B, G*H) = x @ W_ih^T in permuted order, for x (T, B, I) or a ``fold.Folded``."""
    if isinstance(x, fold.Folded):
        fold.table(x.tab, x.emb, pk.ih)
        fold.gather(z, x.ids, x.tab, nt)
    else:
        project(z, x, pk.ih, nt)


def backward_weights(g, dx, dwp_ih, dwp_hh, dz, dbs, x, h, pk, G, nc):
    """``weight_grads`` after BPTT, for x (T, B, I) or a ``fold.Folded`` (then x.demb receives
    the embedding's gradient and dx is not written). g: CellWeights of the gradients; dz: (dzi, dzh)."""
    grads = (g.w_ih, g.w_hh, g.b_ih, g.b_hh)
    if isinstance(x, fold.Folded):
        fold.scatter(x.dtab, x.ids, dz[0], width())
        fold.input_grads(dwp_ih, x.demb, x.dtab, x.emb, pk.dx)
        weight_grads(grads, h, (dwp_ih, dwp_hh), dz, dbs, h, h, _pks(pk, nc), G, nc, False)
    else:
        weight_grads(grads, dx, (dwp_ih, dwp_hh), dz, dbs, x, h, _pks(pk, nc), G, nc, True)


def _pks(pk, nc):
    return pk.dx, pk.wg, pk.wg.size // nc
