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

Speed design: the input projection of all T steps is one GEMM written straight into
``gates`` (N, 3H) with N = T*B; each step runs one GEMM h_{t-1} W_hh^T into ``hw`` and a
fused, vectorizable gate loop. Backward runs the fused gate-gradient loop and
dh_{t-1} = dgh_t W_hh + z * dh_t per step; after the loop dW_ih, dW_hh, db and dx are one
GEMM (or sum) over the whole window. ``h`` holds T+1 rows with row 0 = h0, so the previous
state of every step is the contiguous slice h[:T] (no t=0 special case). Backward
overwrites ``gates`` with the input-side gradients (saving 3TBH floats), so each forward
allows one backward; a second one raises instead of returning wrong gradients.

Activation memory, floats per layer (x4 bytes in float32):
    kept for backward: h (T+1)BH + gates 3TBH + hn TBH; backward scratch: dgh 3TBH,
    hw 3BH, dh/dhz 2BH  ->  about 8*T*B*H per layer, 8*L*T*B*H for L layers
    (L=2, T=100, B=64, H=512: 52.4M floats = 210 MB).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...errors import CharlmError
from .jit import kernel
from .mathf import sigmoid_f, tanh_f

G = 3
_ONE = np.float32(1.0)


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    gates: np.ndarray  # (T, B, 3H) input projection, then activated r, z, n; backward: input-side dpre
    hn: np.ndarray  # (T, B, H) W_hn h_{t-1} + b_hn (the n gate's hidden part, before r *)
    hw: np.ndarray  # (B, 3H) h_{t-1} W_hh^T of the current step
    dgh: np.ndarray  # (T, B, 3H) hidden-side dLoss/dpre: dr, dz, dn * r
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards
    dhz: np.ndarray  # (B, H) z * dLoss/dh_t: the direct path to h_{t-1}
    fresh: np.ndarray  # (1,) int8: 1 after forward, 0 after backward (which consumes gates)


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H (I is unused)."""
    h = np.zeros((T + 1, B, H), dtype)
    return Workspace(
        h=h, hs=h[1:], gates=np.zeros((T, B, G * H), dtype), hn=np.zeros((T, B, H), dtype),
        hw=np.zeros((B, G * H), dtype), dgh=np.zeros((T, B, G * H), dtype),
        dh=np.zeros((B, H), dtype), dhz=np.zeros((B, H), dtype), fresh=np.zeros(1, np.int8),
    )


@kernel
def gru_forward(
    h,  # (T+1, B, H) out: h0 then h_0..h_{T-1}
    gates,  # (T, B, 3H) out: activated r, z, n
    hn,  # (T, B, H) out: W_hn h_{t-1} + b_hn
    hw,  # (B, 3H) scratch
    x,  # (T, B, I)
    h0,  # (B, H)
    w_ih,  # (3H, I)
    w_hh,  # (3H, H)
    b_ih,  # (3H,)
    b_hh,  # (3H,)
):
    T, B, H3 = gates.shape
    H = H3 // 3
    for b in range(B):  # copy first: h0 may alias h[T] (carried state)
        for j in range(H):
            h[0, b, j] = h0[b, j]
    np.dot(x.reshape(T * B, x.shape[2]), w_ih.T, gates.reshape(T * B, H3))
    # One 1-D view per gate, indexed by j only: with offsets into one row (g[H + j], g[2H + j])
    # LLVM left this loop scalar (measured 6x slower at B=64, H=256).
    bir, biz, bin_ = b_ih[:H], b_ih[H:2 * H], b_ih[2 * H:]  # (H,) each
    bhr, bhz, bhn = b_hh[:H], b_hh[H:2 * H], b_hh[2 * H:]  # (H,) each
    for t in range(T):
        np.dot(h[t], w_hh.T, hw)
        for b in range(B):
            gr, gz, gn = gates[t, b, :H], gates[t, b, H:2 * H], gates[t, b, 2 * H:]  # (H,) each
            wr, wz, wn = hw[b, :H], hw[b, H:2 * H], hw[b, 2 * H:]  # (H,) each
            hp, ht, hnb = h[t, b], h[t + 1, b], hn[t, b]  # (H,) each
            for j in range(H):
                r = sigmoid_f(gr[j] + bir[j] + wr[j] + bhr[j])
                z = sigmoid_f(gz[j] + biz[j] + wz[j] + bhz[j])
                a = wn[j] + bhn[j]
                n = tanh_f(gn[j] + bin_[j] + r * a)
                gr[j] = r
                gz[j] = z
                gn[j] = n
                hnb[j] = a
                ht[j] = n + z * (hp[j] - n)


@kernel
def gru_backward(
    dw_ih,  # (3H, I) out
    dw_hh,  # (3H, H) out
    db_ih,  # (3H,) out
    db_hh,  # (3H,) out
    dx,  # (T, B, I) out
    dh0,  # (B, H) out
    gates,  # (T, B, 3H) in: activated r, z, n from forward; out: input-side dLoss/dpre
    dgh,  # (T, B, 3H) scratch: hidden-side dLoss/dpre
    dh,  # (B, H) scratch
    dhz,  # (B, H) scratch
    h,  # (T+1, B, H) from forward
    hn,  # (T, B, H) from forward
    x,  # (T, B, I)
    w_ih,  # (3H, I)
    w_hh,  # (3H, H)
    dhs,  # (T, B, H) dLoss/dh_t from above
    dhT,  # (B, H) dLoss/dh_{T-1} from the future
):
    T, B, H3 = gates.shape
    H = H3 // 3
    N = T * B
    for b in range(B):
        for j in range(H):
            dh[b, j] = dhT[b, j]
    for t in range(T - 1, -1, -1):
        for b in range(B):  # 1-D views indexed by j only, as in the forward
            gr, gz, gn = gates[t, b, :H], gates[t, b, H:2 * H], gates[t, b, 2 * H:]  # (H,) each
            dr_h, dz_h, dn_h = dgh[t, b, :H], dgh[t, b, H:2 * H], dgh[t, b, 2 * H:]  # (H,) each
            hp, hnb, dht, dhb, dhzb = h[t, b], hn[t, b], dhs[t, b], dh[b], dhz[b]  # (H,) each
            for j in range(H):
                r = gr[j]
                z = gz[j]
                n = gn[j]
                d = dht[j] + dhb[j]
                dn = (d - d * z) * (_ONE - n * n)
                dr = dn * hnb[j] * (r - r * r)
                dz = d * (hp[j] - n) * (z - z * z)
                gr[j] = dr
                gz[j] = dz
                gn[j] = dn
                dr_h[j] = dr
                dz_h[j] = dz
                dn_h[j] = dn * r
                dhzb[j] = d * z
        np.dot(dgh[t], w_hh, dh)
        for b in range(B):
            for j in range(H):
                dh[b, j] += dhz[b, j]
    for b in range(B):
        for j in range(H):
            dh0[b, j] = dh[b, j]
    dx2 = gates.reshape(N, H3)  # (N, 3H)
    dh2 = dgh.reshape(N, H3)  # (N, 3H)
    np.dot(dx2.T, x.reshape(N, x.shape[2]), dw_ih)
    np.dot(dh2.T, h[:T].reshape(N, H), dw_hh)
    np.dot(dx2, w_ih, dx.reshape(N, x.shape[2]))
    for k in range(H3):
        db_ih[k] = 0
        db_hh[k] = 0
    for m in range(N):
        for k in range(H3):
            db_ih[k] += dx2[m, k]
            db_hh[k] += dh2[m, k]


def forward(ws, x, h0, c0, w_ih, w_hh, b_ih, b_hh, relu=False):
    """Run the window: fills ws.hs, ws.gates, ws.hn (c0 and relu are ignored: GRU has no cell state)."""
    gru_forward(ws.h, ws.gates, ws.hn, ws.hw, x, h0, w_ih, w_hh, b_ih, b_hh)
    ws.fresh[0] = 1


def backward(ws, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dhT, dcT,
             dw_ih, dw_hh, db_ih, db_hh, dx, dh0, dc0, relu=False):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every d* output.

    Consumes ws.gates (overwritten with gradients): run forward again before a second backward.
    h0 is read from ws (forward stored it), so a caller may pass a view that the forward of
    the next window has since overwritten. dcT is ignored and dc0 is zero-filled.
    """
    if not ws.fresh[0]:
        raise CharlmError("GRU backward needs a forward on the same workspace first (backward consumes it)")
    ws.fresh[0] = 0
    gru_backward(dw_ih, dw_hh, db_ih, db_hh, dx, dh0, ws.gates, ws.dgh, ws.dh, ws.dhz,
                 ws.h, ws.hn, x, w_ih, w_hh, dhs, dhT)
    dc0.fill(0)
