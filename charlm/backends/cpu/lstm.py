"""LSTM cell over a window of T steps: compiled forward and truncated-BPTT backward.

Equations (PyTorch nn.LSTM), per step t with h_{-1} = h0, c_{-1} = c0:
    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          # (B, 4H)
    i = sigmoid(z[:, 0H:1H])   f = sigmoid(z[:, 1H:2H])
    g = tanh(z[:, 2H:3H])      o = sigmoid(z[:, 3H:4H])
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)
Gate layout: the 4H rows of w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,) are i, f, g, o blocks.

Speed design (threads and gate order: see ``recurrent``; the products: ``tile``): the input
projection of all T steps is one GEMM written straight into ``gp`` (split over rows). The
recurrence splits the hidden units: at each step thread k adds h_{t-1} W_hh[its units]^T into its
gate columns (one GEMM with beta = 1, all B rows) and runs the fused, vectorizable gate loop for
its units; one fork-join per step. (When W_hh fits in a core's L2, the row split runs the same
calls with row chunks, which the threads take in turn, through all steps instead:
``recurrent.row_split``.) Backward, per
step and unit chunk: dh_t[its units] = dz_{t+1} W_hh[:, its units], then the gate-gradient loop
(which also sums the bias gradients of its columns); after the loop dW_ih, dW_hh and dx are window
GEMMs. ``h``/``c`` hold T+1 rows with row 0 = h0/c0, so the previous state of every step is the
contiguous slice h[:T] (no t=0 special case).

Activation memory, floats per layer (x4 bytes in float32):
    kept for backward: h, c 2(T+1)BH + gates 4TBH; backward scratch: dgates 4TBH, dh/dc 2BH;
    permuted weights and their gradients 8H(I+H), packed panels (``recurrent.Packed``) 8H(I+H)
    ->  about 10*T*B*H per layer, 10*L*T*B*H for L layers
    (L=2, T=100, B=64, H=512: 65.5M floats = 262 MB).

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
G = 4
_ONE = np.float32(1.0)


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    c: np.ndarray  # (T+1, B, H) c[0] = c0, c[t+1] = c_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    cs: np.ndarray  # (T, B, H) view c[1:]
    gp: np.ndarray  # (T, B, 4H) permuted: input projection, then activated i, f, g, o
    dgp: np.ndarray  # (T, B, 4H) permuted dLoss/dz (pre-activation)
    wp_ih: np.ndarray  # (4H, I) permuted w_ih
    wp_hh: np.ndarray  # (4H, H) permuted w_hh
    dwp_ih: np.ndarray  # (4H, I) scratch: dw_ih in permuted order
    dwp_hh: np.ndarray  # (4H, H) scratch: dw_hh in permuted order
    bp: np.ndarray  # (2, 4H, 1) [0]: b_ih + b_hh; [1]: the same permuted (the forward's bias)
    dbs: np.ndarray  # (2, 4H) permuted bias gradients (both rows the same)
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards
    dc: np.ndarray  # (B, H) dLoss/dc carried backwards
    nc: np.ndarray  # (1,) int64: unit chunks of the last forward (its permutation)
    nr: np.ndarray  # (1,) int64: row chunks of the last forward's loops (``recurrent.row_split``)
    pk: list  # [recurrent.Packed, frozen scope]: the weights packed for the tile GEMM (``frozen``)

    @property
    def gates(self):
        """(T, B, 4H) activated i, f, g, o of the last forward in PyTorch's order (a copy)."""
        return unpermute(self.gp, int(self.nc[0]))


def unpermute(gp, nc):
    """(T, B, G*H) in PyTorch's gate order from a permuted buffer (a copy; for tests and inspection)."""
    T, B, GH = gp.shape
    H = GH // G
    out = np.empty_like(gp)
    for k in range(nc):
        u0, u1 = k * H // nc, (k + 1) * H // nc
        blk = gp[:, :, G * u0:G * u1].reshape(T, B, G, u1 - u0)
        for g in range(G):
            out[:, :, g * H + u0:g * H + u1] = blk[:, :, g]
    return out


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H."""
    h = np.zeros((T + 1, B, H), dtype)
    c = np.zeros((T + 1, B, H), dtype)
    z = lambda *shape: np.zeros(shape, dtype)
    return Workspace(h=h, c=c, hs=h[1:], cs=c[1:], gp=z(T, B, G * H), dgp=z(T, B, G * H),
                     wp_ih=z(G * H, I), wp_hh=z(G * H, H), dwp_ih=z(G * H, I), dwp_hh=z(G * H, H),
                     bp=z(2, G * H, 1), dbs=z(2, G * H),
                     dh=z(B, H), dc=z(B, H), nc=np.ones(1, np.int64), nr=np.ones(1, np.int64), pk=[None, None])


@kernel
def _fwd_units(
    h,  # (T+1, B, H) out: row t+1, units u0..u1
    c,  # (T+1, B, H) out: row t+1, units u0..u1
    gp,  # (T, B, 4H) in: pre-activations; out: activations (this chunk's columns)
    hh,  # Packed.hh
    ip,  # offset of this chunk's panels in hh
    bp,  # (4H,) permuted bias
    t,
    units,  # (u0, u1): this chunk's units
    rows,  # (b0, b1): the rows of h and gp to run (all B, or a row chunk)
):
    T, B, H4 = gp.shape
    H = H4 // 4
    u0, u1 = units
    b0, b1 = rows
    hk = u1 - u0
    tile.gemm_packed(False, (b1 - b0, 4 * hk, H), (h, (t * B + b0) * H, H), (hh, ip), 1,
                     (gp, (t * B + b0) * H4 + 4 * u0, H4))
    bb = bp[4 * u0:4 * u1]  # (4hk,)
    bi, bf, bg, bo = bb[:hk], bb[hk:2 * hk], bb[2 * hk:3 * hk], bb[3 * hk:]  # (hk,) each
    for b in range(b0, b1):  # 1-D row slices per gate block: LLVM then vectorizes the j loop
        zb = gp[t, b, 4 * u0:4 * u1]  # (4hk,)
        zi, zf, zg, zo = zb[:hk], zb[hk:2 * hk], zb[2 * hk:3 * hk], zb[3 * hk:]  # (hk,) each
        cp, cn, hn = c[t, b, u0:u1], c[t + 1, b, u0:u1], h[t + 1, b, u0:u1]  # (hk,)
        for j in range(hk):
            i = sigmoid_f(zi[j] + bi[j])
            f = sigmoid_f(zf[j] + bf[j])
            g = tanh_f(zg[j] + bg[j])
            o = sigmoid_f(zo[j] + bo[j])
            zi[j] = i
            zf[j] = f
            zg[j] = g
            zo[j] = o
            cc = f * cp[j] + i * g
            cn[j] = cc
            hn[j] = o * tanh_f(cc)


@kernel(parallel=True)
def lstm_forward(
    h,  # (T+1, B, H) out: h0 then h_0..h_{T-1}
    c,  # (T+1, B, H) out: c0 then c_0..c_{T-1}
    gp,  # (T, B, 4H) in: x W_ih^T (permuted); out: activated i, f, g, o (permuted)
    h0,  # (B, H)
    c0,  # (B, H)
    hh,  # Packed.hh: per chunk, panels of its W_hh rows transposed
    hstride,  # Packed.strides[0]
    bp,  # (4H,) permuted b_ih + b_hh
    split,  # recurrent.schedule(nc, nr, T): unit chunks, row chunks (nr > 1: the row split), workers, turns
):
    T, B, H4 = gp.shape
    H = H4 // 4
    nc = split[0]
    for b in range(B):  # copy first: h0/c0 may alias h[T]/c[T] (carried state)
        for j in range(H):
            h[0, b, j] = h0[b, j]
            c[0, b, j] = c0[b, j]
    steps, parts, workers = loops(split, T)
    for s in range(steps):  # unit split: a fork-join per step; row split: one for the window
        for _p in prange(workers):  # each worker takes parts until none is left
            q = take(split, s)
            while q < parts:
                ts, ks, rs, _ = work(split, s, q, T, B)
                for t in range(ts[0], ts[1]):
                    for k in range(ks[0], ks[1]):
                        _fwd_units(h, c, gp, hh, k * hstride, bp, t, (k * H // nc, (k + 1) * H // nc), rs)
                q = take(split, s)


@kernel
def _bwd_gates(
    dgp,  # (T, B, 4H) out: dLoss/dz, this chunk's columns of row t
    dbs,  # (4H,) in/out: permuted bias-gradient sums
    dh,  # (B, H) in: dLoss/dh_t (from the step above); this chunk's units are read
    dc,  # (B, H) in/out (this chunk's units)
    c,  # (T+1, B, H) from forward
    gp,  # (T, B, 4H) activations from forward (permuted)
    dhs,  # (T, B, H) dLoss/dh_t from above
    t,
    units,  # (u0, u1): this chunk's units
    rows,  # (b0, b1)
):
    """Gate-gradient loop of step t for the units [u0, u1) (one permutation chunk), rows [b0, b1)."""
    u0, u1 = units
    b0, b1 = rows
    hk = u1 - u0
    sb = dbs[4 * u0:4 * u1]  # (4hk,)
    si, sf, sg, so = sb[:hk], sb[hk:2 * hk], sb[2 * hk:3 * hk], sb[3 * hk:]  # (hk,) each
    for b in range(b0, b1):  # 1-D row slices per gate block, as in forward
        ab, zb = gp[t, b, 4 * u0:4 * u1], dgp[t, b, 4 * u0:4 * u1]  # (4hk,)
        ai, af, ag, ao = ab[:hk], ab[hk:2 * hk], ab[2 * hk:3 * hk], ab[3 * hk:]  # (hk,) each
        zi, zf, zg, zo = zb[:hk], zb[hk:2 * hk], zb[2 * hk:3 * hk], zb[3 * hk:]  # (hk,) each
        cp, cn, dht, dhb, dcb = c[t, b, u0:u1], c[t + 1, b, u0:u1], dhs[t, b, u0:u1], dh[b, u0:u1], dc[b, u0:u1]
        for j in range(hk):
            i = ai[j]
            f = af[j]
            g = ag[j]
            o = ao[j]
            tc = tanh_f(cn[j])
            dhh = dht[j] + dhb[j]
            dcc = dcb[j] + dhh * o * (_ONE - tc * tc)
            di = dcc * g * i * (_ONE - i)
            df = dcc * cp[j] * f * (_ONE - f)
            dg = dcc * i * (_ONE - g * g)
            do = dhh * tc * o * (_ONE - o)
            zi[j] = di
            zf[j] = df
            zg[j] = dg
            zo[j] = do
            si[j] += di
            sf[j] += df
            sg[j] += dg
            so[j] += do
            dcb[j] = dcc * f


@kernel(parallel=True)
def lstm_backward(
    dstate0,  # out: dh0, dc0 (B, H)
    dgp,  # (T, B, 4H) out: permuted dLoss/dz (pre-activation)
    part,  # (nr, 4H) out: permuted bias-gradient sums of each row chunk (zeroed by the caller)
    dh,  # (B, H) scratch
    dc,  # (B, H) scratch
    c,  # (T+1, B, H) from forward
    gp,  # (T, B, 4H) permuted activations from forward
    dhp,  # (Packed.dh: per chunk, panels of W_hh's columns for its units, Packed.strides[1])
    dhs,  # (T, B, H) dLoss/dh_t from above
    dstateT,  # dhT, dcT (B, H): dLoss/d(h, c)_{T-1} from the future
    split,  # recurrent.schedule(nc, nr, T) as in the forward
):
    dh0, dc0 = dstate0
    dhT, dcT = dstateT
    dhp, dstride = dhp
    nc = split[0]
    T, B, H4 = gp.shape
    H = H4 // 4
    for b in range(B):
        for j in range(H):
            dh[b, j] = dhT[b, j]
            dc[b, j] = dcT[b, j]
    steps, parts, workers = loops(split, T)
    for s in range(steps - 1, -1, -1):
        for _p in prange(workers):  # each worker takes parts until none is left
            q = take(split, s)
            while q < parts:
                ts, ks, rs, r = work(split, s, q, T, B)
                b0, b1 = rs
                for t in range(ts[1] - 1, ts[0] - 1, -1):
                    for k in range(ks[0], ks[1]):
                        u0 = k * H // nc
                        u1 = (k + 1) * H // nc
                        if t < T - 1:  # dh_t = dz_{t+1} W_hh for these units (dz_{t+1} of every chunk is ready)
                            tile.gemm_packed(False, (b1 - b0, u1 - u0, H4), (dgp, ((t + 1) * B + b0) * H4, H4),
                                             (dhp, k * dstride), 0, (dh, b0 * H + u0, H))
                        _bwd_gates(dgp, part[r], dh, dc, c, gp, dhs, t, (u0, u1), rs)
                q = take(split, s)
    for k in range(nc):  # dh0 = dz_0 W_hh
        u0 = k * H // nc
        tile.gemm_packed(False, (B, (k + 1) * H // nc - u0, H4), (dgp, 0, H4), (dhp, k * dstride), 0, (dh0, u0, H))
    for b in range(B):
        for j in range(H):
            dc0[b, j] = dc[b, j]


@governed(by_workspace)
def forward(ws, x, state0, w):
    """Run the window: fills ws.hs, ws.cs, ws.gp. x (T, B, I); state0 (h, c) (B, H); w: CellWeights."""
    H = state0.h.shape[1]
    nc = split(H)
    ws.nc[0] = nc
    np.add(w.b_ih, w.b_hh, out=ws.bp[0, :, 0])
    permute_rows(ws.bp[1], ws.bp[0], G, nc)
    if not packed_here(ws.pk, nc):  # inside frozen() once per scope, else every window
        permute_rows(ws.wp_ih, w.w_ih, G, nc)
        permute_rows(ws.wp_hh, w.w_hh, G, nc)
        pk = packed(ws.pk, nc, G, w.w_ih.shape[1], H, ws.gp.dtype)
        pack_weights(pk.ih, pk.dx, pk.hh, pk.dh, pk.strides, ws.wp_ih, ws.wp_hh, G, nc)
    pk = ws.pk[0]
    input_projection(ws.gp, x, pk, width())
    ws.nr[0] = row_split(state0.h.shape[0], H, G, ws.gp.itemsize)
    lstm_forward(ws.h, ws.c, ws.gp, state0.h, state0.c, pk.hh, int(pk.strides[0]), ws.bp[1, :, 0],
                 schedule(nc, int(ws.nr[0]), ws.gp.shape[0]))


@governed(by_workspace)
def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output.

    Outputs: grads (CellWeights of dw_ih, dw_hh, db_ih, db_hh), dx (T, B, I), dstate0 (dh0, dc0)
    (B, H). Inputs: x (T, B, I) the forward's input, dhs (T, B, H) dLoss/dhs, dstateT (dhT, dcT)
    (B, H) dLoss/d(final state). h0/c0 and the weights are read from ws (forward stored them), so
    a caller may pass views that the forward of the next window has since overwritten.
    """
    nc = int(ws.nc[0])
    g = grads
    pk = ws.pk[0]
    nr = int(ws.nr[0])
    part = np.zeros((nr, ws.dbs.shape[1]), ws.dbs.dtype)  # (nr, 4H)
    lstm_backward((dstate0.h, dstate0.c), ws.dgp, part, ws.dh, ws.dc, ws.c, ws.gp, (pk.dh, int(pk.strides[1])), dhs,
                  (dstateT.h, dstateT.c), schedule(nc, nr, dhs.shape[0]))
    np.sum(part, axis=0, out=ws.dbs[0])  # the row chunks' sums in order
    ws.dbs[1] = ws.dbs[0]
    backward_weights(g, dx, ws.dwp_ih, ws.dwp_hh, (ws.dgp, ws.dgp), ws.dbs, x, ws.h, pk, G, nc)
