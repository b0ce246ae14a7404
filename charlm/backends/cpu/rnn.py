"""Vanilla (Elman) RNN cell over a window of T steps: compiled forward and truncated-BPTT backward.

Equations (PyTorch nn.RNN), per step t with h_{-1} = h0:
    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          # (B, H)
    h_t = tanh(z_t)            (or relu(z_t) with relu=True)
Gate layout: one block, w_ih (H, I), w_hh (H, H), b_ih, b_hh (H,). The activation is chosen at
``alloc`` (``relu=True``) and kept in the workspace; the ``c`` fields of the states are ignored
(``dstate0.c``, when given, is zero-filled).

Speed design (threads: see ``recurrent``; with one gate the chunk order is PyTorch's order, so
nothing is permuted): the input projection of all T steps is one GEMM written straight into ``hs``
(split over rows). The recurrence splits the hidden units: at each step thread k adds h_{t-1}
W_hh[its units]^T into its columns of h_t (a GEMM with beta = 1, all B rows) and activates them in
place; one fork-join per step. (When W_hh fits in a core's L2, the row split runs the same calls
with row chunks, which the threads take in turn, through all steps instead:
``recurrent.row_split``.) Backward needs only
the activated outputs (tanh' = 1 - h^2, relu' = [h > 0]): per step and unit chunk dh_t = dz_{t+1}
W_hh[:, its units], then dz_t (summing the bias gradients); dW_ih, dW_hh and dx are window GEMMs.
``h`` holds T+1 rows with row 0 = h0, so every step's previous state is h[:T].

Activation memory, floats per layer (x4 bytes in float32):
    kept for backward: h (T+1)BH; backward scratch: dz TBH, dh BH
    ->  about 2*T*B*H per layer, 2*L*T*B*H for L layers.

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
from .mathf import tanh_f
from .recurrent import (
    backward_weights,
    input_projection,
    loops,
    pack_weights,
    packed,
    row_split,
    schedule,
    split,
    take,
    work,
)
from .threads import by_workspace, governed, width

FOLDS = True  # forward/backward accept a fold.Folded as x (the embedding folded in)
G = 1
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    dz: np.ndarray  # (T, B, H) dLoss/dz (pre-activation)
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards
    bias: np.ndarray  # (H,) b_ih + b_hh
    dbs: np.ndarray  # (2, H) bias gradients (both rows the same)
    nc: np.ndarray  # (1,) int64: unit chunks of the last forward
    nr: np.ndarray  # (1,) int64: row chunks of the last forward's loops (``recurrent.row_split``)
    w_ih: np.ndarray  # (H, I) copy of the forward's w_ih (backward reads it)
    w_hh: np.ndarray  # (H, H) copy of the forward's w_hh
    relu: bool  # activation: relu (True) or tanh (False)
    pk: list  # [recurrent.Packed, frozen scope]: the weights packed for the tile GEMM (``frozen``)


def alloc(T, B, I, H, dtype=np.float32, relu=False):
    """Workspace for windows of T steps, batch B, input size I, hidden size H; tanh or relu."""
    h = np.zeros((T + 1, B, H), dtype)
    return Workspace(h=h, hs=h[1:], dz=np.zeros((T, B, H), dtype), dh=np.zeros((B, H), dtype),
                     bias=np.zeros(H, dtype), dbs=np.zeros((2, H), dtype), nc=np.ones(1, np.int64),
                     nr=np.ones(1, np.int64), w_ih=np.zeros((H, I), dtype), w_hh=np.zeros((H, H), dtype),
                     relu=bool(relu), pk=[None, None])


@kernel
def _fwd_units(
    h,  # (T+1, B, H) in: h_{t-1} (row t), x_t W_ih^T (row t+1); out: h_t, units u0..u1
    hh,  # Packed.hh
    ip,  # offset of this chunk's panels in hh
    bias,  # (H,)
    relu,  # bool
    t,
    units,  # (u0, u1): this chunk's units
    rows,  # (b0, b1): the rows to run (all B, or a row chunk)
):
    u0, u1 = units
    b0, b1 = rows
    B = h.shape[1]
    H = h.shape[2]
    hk = u1 - u0
    tile.gemm_packed(False, (b1 - b0, hk, H), (h, (t * B + b0) * H, H), (hh, ip), 1,
                     (h, ((t + 1) * B + b0) * H + u0, H))
    bb = bias[u0:u1]  # (hk,)
    for b in range(b0, b1):  # 1-D row slices: LLVM then vectorizes the j loop
        hn = h[t + 1, b, u0:u1]  # (hk,)
        if relu:
            for j in range(hk):
                hn[j] = max(hn[j] + bb[j], _ZERO)
        else:
            for j in range(hk):
                hn[j] = tanh_f(hn[j] + bb[j])


@kernel(parallel=True)
def rnn_forward(
    h,  # (T+1, B, H) in: h[0] = h0, rows 1..T hold x W_ih^T; out: rows 1..T = h_0..h_{T-1}
    hh,  # Packed.hh: per chunk, panels of its W_hh rows transposed
    hstride,  # Packed.strides[0]
    bias,  # (H,) b_ih + b_hh
    relu,  # bool: relu instead of tanh
    split,  # recurrent.schedule(nc, nr, T): unit chunks, row chunks (nr > 1: the row split), workers, turns
):
    T = h.shape[0] - 1
    B = h.shape[1]
    H = h.shape[2]
    nc = split[0]
    steps, parts, workers = loops(split, T)
    for s in range(steps):  # unit split: a fork-join per step; row split: one for the window
        for _p in prange(workers):  # each worker takes parts until none is left
            q = take(split, s)
            while q < parts:
                ts, ks, rs, _ = work(split, s, q, T, B)
                for t in range(ts[0], ts[1]):
                    for k in range(ks[0], ks[1]):
                        _fwd_units(h, hh, k * hstride, bias, relu, t, (k * H // nc, (k + 1) * H // nc), rs)
                q = take(split, s)


@kernel
def _bwd_units(
    dz,  # (T, B, H) out: row t, units u0..u1
    dbs,  # (H,) in/out: bias-gradient sums
    dh,  # (B, H) scratch (this chunk's units)
    h,  # (T+1, B, H) from forward
    dhp,  # (Packed.dh, offset of this chunk's panels in it)
    dhs,  # (T, B, H) dLoss/dh_t from above
    relu,  # bool
    t,
    units,  # (u0, u1): this chunk's units
    rows,  # (b0, b1)
):
    dhp, ip = dhp
    u0, u1 = units
    b0, b1 = rows
    T, B, H = dz.shape
    hk = u1 - u0
    if t < T - 1:  # dh_t = dz_{t+1} W_hh for this chunk's units
        tile.gemm_packed(False, (b1 - b0, hk, H), (dz, ((t + 1) * B + b0) * H, H), (dhp, ip), 0, (dh, b0 * H + u0, H))
    sb = dbs[u0:u1]  # (hk,)
    for b in range(b0, b1):
        hn, dzb, dht, dhb = h[t + 1, b, u0:u1], dz[t, b, u0:u1], dhs[t, b, u0:u1], dh[b, u0:u1]  # (hk,)
        if relu:
            for j in range(hk):
                d = (dht[j] + dhb[j]) if hn[j] > _ZERO else _ZERO
                dzb[j] = d
                sb[j] += d
        else:
            for j in range(hk):
                d = (dht[j] + dhb[j]) * (_ONE - hn[j] * hn[j])
                dzb[j] = d
                sb[j] += d


@kernel(parallel=True)
def rnn_backward(
    dh0,  # (B, H) out
    dz,  # (T, B, H) out: dLoss/dz
    part,  # (nr, H) out: bias-gradient sums of each row chunk (zeroed by the caller)
    dh,  # (B, H) scratch
    h,  # (T+1, B, H) from forward
    dhp,  # (Packed.dh: per chunk, panels of W_hh's columns for its units, Packed.strides[1])
    dhs,  # (T, B, H) dLoss/dh_t from above
    dhT,  # (B, H) dLoss/dh_{T-1} from the future
    relu,  # bool
    split,  # recurrent.schedule(nc, nr, T) as in the forward
):
    T, B, H = dz.shape
    dhp, dstride = dhp
    nc = split[0]
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
                        _bwd_units(dz, part[r], dh, h, (dhp, k * dstride), dhs, relu, t,
                                   (k * H // nc, (k + 1) * H // nc), rs)
                q = take(split, s)
    for k in range(nc):  # dh0 = dz_0 W_hh
        u0 = k * H // nc
        tile.gemm_packed(False, (B, (k + 1) * H // nc - u0, H), (dz, 0, H), (dhp, k * dstride), 0, (dh0, u0, H))


@governed(by_workspace)
def forward(ws, x, state0, w):
    """Run the window: fills ws.hs. x (T, B, I); state0.h (B, H); w: CellWeights (PyTorch layout)."""
    h0 = state0.h
    nc = split(h0.shape[1])
    ws.nc[0] = nc
    np.add(w.b_ih, w.b_hh, out=ws.bias)
    np.copyto(ws.h[0], h0)  # first: h0 may alias h[T] (carried state), which the projection overwrites
    if not packed_here(ws.pk, nc):  # inside frozen() once per scope, else every window
        np.copyto(ws.w_ih, w.w_ih)
        np.copyto(ws.w_hh, w.w_hh)
        pk = packed(ws.pk, nc, G, w.w_ih.shape[1], h0.shape[1], ws.h.dtype)
        pack_weights(pk.ih, pk.dx, pk.hh, pk.dh, pk.strides, ws.w_ih, ws.w_hh, G, nc)
    pk = ws.pk[0]
    input_projection(ws.hs, x, pk, width())
    ws.nr[0] = row_split(h0.shape[0], h0.shape[1], G, ws.h.itemsize)
    rnn_forward(ws.h, pk.hh, int(pk.strides[0]), ws.bias, ws.relu, schedule(nc, int(ws.nr[0]), ws.h.shape[0] - 1))


@governed(by_workspace)
def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output.

    Outputs: grads (CellWeights of dw_ih, dw_hh, db_ih, db_hh), dx (T, B, I), dstate0.h (B, H)
    (dstate0.c, if not None, is zero-filled). Inputs: x (T, B, I) the forward's input, dhs (T, B, H)
    dLoss/dhs, dstateT.h (B, H) dLoss/d(final h) (dstateT.c is ignored). h0 and the weights are
    read from ws (forward copied them).
    """
    nc = int(ws.nc[0])
    g = grads
    pk = ws.pk[0]
    nr = int(ws.nr[0])
    part = np.zeros((nr, ws.dbs.shape[1]), ws.dbs.dtype)  # (nr, H)
    rnn_backward(dstate0.h, ws.dz, part, ws.dh, ws.h, (pk.dh, int(pk.strides[1])), dhs, dstateT.h, ws.relu,
                 schedule(nc, nr, dhs.shape[0]))
    np.sum(part, axis=0, out=ws.dbs[0])  # the row chunks' sums in order
    ws.dbs[1] = ws.dbs[0]
    backward_weights(g, dx, g.w_ih, g.w_hh, (ws.dz, ws.dz), ws.dbs, x, ws.h, pk, G, nc)
    if dstate0.c is not None:
        dstate0.c.fill(0)
