"""GRU cell over a window of T steps: compiled forward and truncated-BPTT backward.

Equations (PyTorch nn.GRU), per step t with h_{-1} = h0:
    xr, xz, xn = x_t W_ih^T + b_ih                        # (B, 3H) split in three
    hr, hz, hn = h_{t-1} W_hh^T + b_hh                    # (B, 3H)
    r = sigmoid(xr + hr)    z = sigmoid(xz + hz)
    n = tanh(xn + r * hn)
    h_t = (1 - z) * n + z * h_{t-1}
Gate layout: the 3H rows of w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,) are r, z, n blocks.
The n gate's hidden part is multiplied by r, so its pre-activation gradient differs between
the input side (dn_pre) and the hidden side (dn_pre * r): backward keeps both.

Speed design (threads and gate order: see ``recurrent``): the input projection of all T steps is
one GEMM written straight into ``gp`` (split over rows). The recurrence splits the hidden units:
at each step thread k computes h_{t-1} W_hh[its units]^T into its columns of ``hw`` (one GEMM, all
B rows) and runs the fused, vectorizable gate loop for its units; one fork-join per step. (When
W_hh fits in a core's L2, the row split runs the same calls with row chunks, which the threads
take in turn, through all steps instead: ``recurrent.row_split``.) Backward, per step and unit
chunk: dh_t[its units] = z *
dh_{t+1} (left there by the gate loop) + dgh_{t+1} W_hh[:, its units] (a GEMM with beta = 1), then
the gate-gradient loop (which also sums the bias gradients of its columns); after the loop dW_ih,
dW_hh and dx are window GEMMs. ``h`` holds T+1 rows with row 0 = h0, so the previous state of
every step is the contiguous slice h[:T]. Backward writes the input-side gradients to their own
buffer ``dgi`` (forward's activations in ``gp`` stay as they were), so backward may run again on
the same forward. (It used to overwrite ``gp`` and guard a second backward with a flag; measured
in issue 14's cleanup: the separate buffer costs no time at B=64, T=100, H=256..512.)

Activation memory, floats per layer (x4 bytes in float32):
    kept for backward: h (T+1)BH + gates 3TBH + hn TBH; backward scratch: dgi 3TBH, dgh 3TBH,
    hw 3BH, dh BH; permuted weights and their gradients 6H(I+H)  ->  about 11*T*B*H per layer
    (L=2, T=100, B=64, H=512: 72.1M floats = 288 MB).

Every product runs through ``tile`` (packed weight panels), one-row products (B = 1: `charlm eval
--file`, score, inspect) too: a 1 x NR tile streams the packed panels, so no GEMV path is needed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from . import tile
from .fold import Folded  # noqa: F401  (re-exported: the cell's folded-input type)
from .fold import alloc as fold_alloc  # noqa: F401
from .frozen import packed_here
from .jit import kernel
from .mathf import sigmoid_f, tanh_f
from .recurrent import (
    backward_weights,
    input_projection,
    loops,
    pack_weights,
    packed,
    permute_rows,
    row_split,
    schedule,
    split,
    take,
    work,
)
from .threads import by_workspace, governed, width

FOLDS = True  # forward/backward accept a fold.Folded as x (the embedding folded in)
G = 3
_ONE = np.float32(1.0)


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    gp: np.ndarray  # (T, B, 3H) permuted: input projection, then activated r, z, n
    hn: np.ndarray  # (T, B, H) W_hn h_{t-1} + b_hn (the n gate's hidden part, before r *)
    hw: np.ndarray  # (B, 3H) permuted h_{t-1} W_hh^T of the current step
    dgi: np.ndarray  # (T, B, 3H) permuted input-side dLoss/dpre: dr, dz, dn
    dgh: np.ndarray  # (T, B, 3H) permuted hidden-side dLoss/dpre: dr, dz, dn * r
    wp_ih: np.ndarray  # (3H, I) permuted w_ih
    wp_hh: np.ndarray  # (3H, H) permuted w_hh
    dwp_ih: np.ndarray  # (3H, I) scratch: dw_ih in permuted order
    dwp_hh: np.ndarray  # (3H, H) scratch: dw_hh in permuted order
    bp: np.ndarray  # (2, 3H, 1) [0]: b_ih + b_hh for r, z and b_ih for n; [1]: the same permuted
    dbs: np.ndarray  # (2, 3H) permuted bias gradients: input side, hidden side
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards
    nc: np.ndarray  # (1,) int64: unit chunks of the last forward (its permutation)
    nr: np.ndarray  # (1,) int64: row chunks of the last forward's loops (``recurrent.row_split``)
    pk: list  # [recurrent.Packed, frozen scope]: the weights packed for the tile GEMM (``frozen``)


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H."""
    h = np.zeros((T + 1, B, H), dtype)
    z = lambda *shape: np.zeros(shape, dtype)
    return Workspace(h=h, hs=h[1:], gp=z(T, B, G * H), hn=z(T, B, H), hw=z(B, G * H), dgi=z(T, B, G * H),
                     dgh=z(T, B, G * H), wp_ih=z(G * H, I), wp_hh=z(G * H, H), dwp_ih=z(G * H, I),
                     dwp_hh=z(G * H, H), bp=z(2, G * H, 1), dbs=z(2, G * H), dh=z(B, H), nc=np.ones(1, np.int64),
                     nr=np.ones(1, np.int64), pk=[None, None])


@kernel
def _fwd_units(
    h,  # (T+1, B, H) out: row t+1, units u0..u1
    gp,  # (T, B, 3H) in: input projection; out: activations (this chunk's columns)
    hn,  # (T, B, H) out: W_hn h_{t-1} + b_hn, units u0..u1
    hw,  # (B, 3H) scratch (this chunk's columns)
    hh,  # Packed.hh
    ip,  # offset of this chunk's panels in hh
    bias,  # bp (3H,) permuted: b_ih + b_hh (r, z), b_ih (n); b_hh (3H,) PyTorch order (its n part, b_hn, is used)
    t,
    units,  # (u0, u1): this chunk's units
    rows,  # (b0, b1): the rows to run (all B, or a row chunk)
):
    bp, b_hh = bias
    u0, u1 = units
    b0, b1 = rows
    T, B, H3 = gp.shape
    H = H3 // 3
    hk = u1 - u0
    tile.gemm_packed(False, (b1 - b0, 3 * hk, H), (h, (t * B + b0) * H, H), (hh, ip), 0, (hw, b0 * H3 + 3 * u0, H3))
    bb = bp[3 * u0:3 * u1]  # (3hk,)
    br, bz, bin_ = bb[:hk], bb[hk:2 * hk], bb[2 * hk:]  # (hk,) each
    bhn = b_hh[2 * H + u0:2 * H + u1]  # (hk,)
    # One 1-D view per gate, indexed by j only: with offsets into one row (g[H + j], g[2H + j])
    # LLVM left this loop scalar (measured 6x slower at B=64, H=256).
    for b in range(b0, b1):
        gb, wb = gp[t, b, 3 * u0:3 * u1], hw[b, 3 * u0:3 * u1]  # (3hk,)
        gr, gz, gn = gb[:hk], gb[hk:2 * hk], gb[2 * hk:]  # (hk,) each
        wr, wz, wn = wb[:hk], wb[hk:2 * hk], wb[2 * hk:]  # (hk,) each
        hp, ht, hnb = h[t, b, u0:u1], h[t + 1, b, u0:u1], hn[t, b, u0:u1]  # (hk,) each
        for j in range(hk):
            r = sigmoid_f(gr[j] + wr[j] + br[j])
            z = sigmoid_f(gz[j] + wz[j] + bz[j])
            a = wn[j] + bhn[j]
            n = tanh_f(gn[j] + bin_[j] + r * a)
            gr[j] = r
            gz[j] = z
            gn[j] = n
            hnb[j] = a
            ht[j] = n + z * (hp[j] - n)


@kernel(parallel=True)
def gru_forward(
    h,  # (T+1, B, H) out: h0 then h_0..h_{T-1}
    gp,  # (T, B, 3H) in: x W_ih^T (permuted); out: activated r, z, n (permuted)
    hn,  # (T, B, H) out: W_hn h_{t-1} + b_hn
    hw,  # (B, 3H) scratch
    h0,  # (B, H)
    hh,  # Packed.hh: per chunk, panels of its W_hh rows transposed
    hstride,  # Packed.strides[0]
    bp,  # (3H,) permuted bias (see _fwd_units)
    b_hh,  # (3H,)
    split,  # recurrent.schedule(nc, nr, T): unit chunks, row chunks (nr > 1: the row split), workers, turns
):
    T, B, H3 = gp.shape
    H = H3 // 3
    nc = split[0]
    for b in range(B):  # copy first: h0 may alias h[T] (carried state)
        for j in range(H):
            h[0, b, j] = h0[b, j]
    steps, parts, workers = loops(split, T)
    for s in range(steps):  # unit split: a fork-join per step; row split: one for the window
        for _p in prange(workers):  # each worker takes parts until none is left
            q = take(split, s)
            while q < parts:
                ts, ks, rs, _ = work(split, s, q, T, B)
                for t in range(ts[0], ts[1]):
                    for k in range(ks[0], ks[1]):
                        _fwd_units(h, gp, hn, hw, hh, k * hstride, (bp, b_hh), t, (k * H // nc, (k + 1) * H // nc), rs)
                q = take(split, s)


@kernel
def _bwd_units(
    dg,  # out: dgi, dgh (T, B, 3H): input-side and hidden-side dLoss/dpre (this chunk's columns of row t)
    gp,  # (T, B, 3H) activations from forward
    dbs,  # (2, 3H) in/out: permuted bias-gradient sums
    dh,  # (B, H) in: z * dh_{t+1} (this chunk's units); out: z * dh_t
    h,  # (T+1, B, H) from forward
    hn,  # (T, B, H) from forward
    dhp,  # Packed.dh from this chunk's panels on
    dhs,  # (T, B, H) dLoss/dh_t from above
    t,
    units,  # (u0, u1): this chunk's units
    rows,  # (b0, b1)
):
    dgi, dgh = dg
    u0, u1 = units
    b0, b1 = rows
    T, B, H3 = gp.shape
    H = H3 // 3
    hk = u1 - u0
    if t < T - 1:  # dh_t = z * dh_{t+1} + dgh_{t+1} W_hh for this chunk's units
        tile.gemm_packed(False, (b1 - b0, hk, H3), (dgh, ((t + 1) * B + b0) * H3, H3), (dhp, 0), 1,
                         (dh, b0 * H + u0, H))
    si, sh = dbs[0, 3 * u0:3 * u1], dbs[1, 3 * u0:3 * u1]  # (3hk,) each
    sir, siz, sin_, shn = si[:hk], si[hk:2 * hk], si[2 * hk:], sh[2 * hk:]  # (hk,) each
    for b in range(b0, b1):  # 1-D views indexed by j only, as in the forward
        gb, ib, db = gp[t, b, 3 * u0:3 * u1], dgi[t, b, 3 * u0:3 * u1], dgh[t, b, 3 * u0:3 * u1]  # (3hk,)
        gr, gz, gn = gb[:hk], gb[hk:2 * hk], gb[2 * hk:]  # (hk,) each
        dr_i, dz_i, dn_i = ib[:hk], ib[hk:2 * hk], ib[2 * hk:]  # (hk,) each
        dr_h, dz_h, dn_h = db[:hk], db[hk:2 * hk], db[2 * hk:]  # (hk,) each
        hp, hnb, dht, dhb = h[t, b, u0:u1], hn[t, b, u0:u1], dhs[t, b, u0:u1], dh[b, u0:u1]  # (hk,) each
        for j in range(hk):
            r = gr[j]
            z = gz[j]
            n = gn[j]
            d = dht[j] + dhb[j]
            dn = (d - d * z) * (_ONE - n * n)
            dr = dn * hnb[j] * (r - r * r)
            dz = d * (hp[j] - n) * (z - z * z)
            dr_i[j] = dr
            dz_i[j] = dz
            dn_i[j] = dn
            dr_h[j] = dr
            dz_h[j] = dz
            dn_h[j] = dn * r
            sir[j] += dr
            siz[j] += dz
            sin_[j] += dn
            shn[j] += dn * r
            dhb[j] = d * z  # the direct path to h_{t-1}; the next step's GEMM adds dgh_t W_hh


@kernel(parallel=True)
def gru_backward(
    dh0,  # (B, H) out
    dg,  # out: dgi, dgh (T, B, 3H): permuted input-side and hidden-side dLoss/dpre
    gp,  # (T, B, 3H) permuted activations from forward
    part,  # (nr, 2, 3H) out: permuted bias-gradient sums (input side, hidden side) of each row chunk (zeroed)
    dh,  # (B, H) scratch
    h,  # (T+1, B, H) from forward
    hn,  # (T, B, H) from forward
    dhp,  # (Packed.dh: per chunk, panels of W_hh's columns for its units, Packed.strides[1])
    dhs,  # (T, B, H) dLoss/dh_t from above
    dhT,  # (B, H) dLoss/dh_{T-1} from the future
    split,  # recurrent.schedule(nc, nr, T) as in the forward
):
    dgi, dgh = dg
    dhp, dstride = dhp
    nc = split[0]
    T, B, H3 = gp.shape
    H = H3 // 3
    for b in range(B):
        for j in range(H):
            dh[b, j] = dhT[b, j]
    steps, parts, workers = loops(split, T)
    for s in range(steps - 1, -1, -1):
        for _p in prange(workers):  # each worker takes parts until none is left
            q = take(split, s)
            while q < parts:
                ts, ks, rs, r = work(split, s, q, T, B)
                for t in range(ts[1] - 1, ts[0] - 1, -1):
                    for k in range(ks[0], ks[1]):
                        _bwd_units(dg, gp, part[r], dh, h, hn, dhp[k * dstride:], dhs, t,
                                   (k * H // nc, (k + 1) * H // nc), rs)
                q = take(split, s)
    for k in range(nc):  # dh0 = z * dh_0 + dgh_0 W_hh
        u0 = k * H // nc
        tile.gemm_packed(False, (B, (k + 1) * H // nc - u0, H3), (dgh, 0, H3), (dhp, k * dstride), 1, (dh, u0, H))
    for b in range(B):
        for j in range(H):
            dh0[b, j] = dh[b, j]


@governed(by_workspace)
def forward(ws, x, state0, w):
    """Run the window: fills ws.hs, ws.gp, ws.hn. x (T, B, I); state0.h (B, H) (no cell state); w: CellWeights."""
    h0 = state0.h
    H = h0.shape[1]
    nc = split(H)
    ws.nc[0] = nc
    b0 = ws.bp[0, :, 0]  # (3H,)
    np.add(w.b_ih[:2 * H], w.b_hh[:2 * H], out=b0[:2 * H])
    b0[2 * H:] = w.b_ih[2 * H:]
    permute_rows(ws.bp[1], ws.bp[0], G, nc)
    if not packed_here(ws.pk, nc):  # inside frozen() once per scope, else every window
        permute_rows(ws.wp_ih, w.w_ih, G, nc)
        permute_rows(ws.wp_hh, w.w_hh, G, nc)
        pk = packed(ws.pk, nc, G, w.w_ih.shape[1], H, ws.gp.dtype)
        pack_weights(pk.ih, pk.dx, pk.hh, pk.dh, pk.strides, ws.wp_ih, ws.wp_hh, G, nc)
    pk = ws.pk[0]
    input_projection(ws.gp, x, pk, width())
    ws.nr[0] = row_split(h0.shape[0], H, G, ws.gp.itemsize)
    gru_forward(ws.h, ws.gp, ws.hn, ws.hw, h0, pk.hh, int(pk.strides[0]), ws.bp[1, :, 0], w.b_hh,
                schedule(nc, int(ws.nr[0]), ws.gp.shape[0]))


@governed(by_workspace)
def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output.

    Outputs: grads (CellWeights of dw_ih, dw_hh, db_ih, db_hh), dx (T, B, I), dstate0.h (B, H)
    (dstate0.c, if not None, is zero-filled). Inputs: x, dhs (T, B, H), dstateT.h (B, H)
    (dstateT.c is ignored). Reads forward's buffers without changing them (h0 and the weights
    included: forward stored them), so it may run again after the same forward.
    """
    nc = int(ws.nc[0])
    g = grads
    pk = ws.pk[0]
    nr = int(ws.nr[0])
    H = ws.dh.shape[1]
    part = np.zeros((nr,) + ws.dbs.shape, ws.dbs.dtype)  # (nr, 2, 3H)
    gru_backward(dstate0.h, (ws.dgi, ws.dgh), ws.gp, part, ws.dh, ws.h, ws.hn, (pk.dh, int(pk.strides[1])), dhs,
                 dstateT.h, schedule(nc, nr, dhs.shape[0]))
    np.sum(part, axis=0, out=ws.dbs)  # the row chunks' sums in order
    for k in range(nc):  # the r and z parts of the two sides are the same gradients
        u0, u1 = k * H // nc, (k + 1) * H // nc
        ws.dbs[1, 3 * u0:3 * u0 + 2 * (u1 - u0)] = ws.dbs[0, 3 * u0:3 * u0 + 2 * (u1 - u0)]
    backward_weights(g, dx, ws.dwp_ih, ws.dwp_hh, (ws.dgi, ws.dgh), ws.dbs, x, ws.h, pk, G, nc)
    if dstate0.c is not None:
        dstate0.c.fill(0)
