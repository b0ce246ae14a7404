"""LSTM cell over a window of T steps: compiled forward and truncated-BPTT backward.

Equations (PyTorch nn.LSTM), per step t with h_{-1} = h0, c_{-1} = c0:
    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          # (B, 4H)
    i = sigmoid(z[:, 0H:1H])   f = sigmoid(z[:, 1H:2H])
    g = tanh(z[:, 2H:3H])      o = sigmoid(z[:, 3H:4H])
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)
Gate layout: the 4H rows of w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,) are i, f, g, o blocks.

Speed design: the input projection of all T steps is one GEMM written straight into
``gates`` (N, 4H) with N = T*B; each step adds h_{t-1} W_hh^T (one GEMM into ``hw``) and
runs a fused, vectorizable gate loop. Backward runs the fused gate-gradient loop and
dh_{t-1} = dz_t W_hh per step; after the loop dW_ih, dW_hh, db and dx are one GEMM (or
sum) over the whole window. ``h``/``c`` hold T+1 rows with row 0 = h0/c0, so the
previous state of every step is the contiguous slice h[:T] (no t=0 special case).

Activation memory, floats per layer (x4 bytes in float32):
    kept for backward: h, c 2(T+1)BH + gates 4TBH; backward scratch: dgates 4TBH,
    hw 4BH, dh/dc 2BH  ->  about 10*T*B*H per layer, 10*L*T*B*H for L layers
    (L=2, T=100, B=64, H=512: 65.5M floats = 262 MB).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .jit import kernel
from .mathf import sigmoid_f, tanh_f

G = 4
_ONE = np.float32(1.0)


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    c: np.ndarray  # (T+1, B, H) c[0] = c0, c[t+1] = c_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    cs: np.ndarray  # (T, B, H) view c[1:]
    gates: np.ndarray  # (T, B, 4H) input projection, then activated i, f, g, o
    hw: np.ndarray  # (B, 4H) h_{t-1} W_hh^T of the current step
    dgates: np.ndarray  # (T, B, 4H) dLoss/dz (pre-activation)
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards
    dc: np.ndarray  # (B, H) dLoss/dc carried backwards


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H (I is unused)."""
    h = np.zeros((T + 1, B, H), dtype)
    c = np.zeros((T + 1, B, H), dtype)
    return Workspace(
        h=h, c=c, hs=h[1:], cs=c[1:],
        gates=np.zeros((T, B, G * H), dtype), hw=np.zeros((B, G * H), dtype),
        dgates=np.zeros((T, B, G * H), dtype), dh=np.zeros((B, H), dtype), dc=np.zeros((B, H), dtype),
    )


@kernel
def lstm_forward(
    h,  # (T+1, B, H) out: h0 then h_0..h_{T-1}
    c,  # (T+1, B, H) out: c0 then c_0..c_{T-1}
    gates,  # (T, B, 4H) out: activated i, f, g, o
    hw,  # (B, 4H) scratch
    x,  # (T, B, I)
    h0,  # (B, H)
    c0,  # (B, H)
    w_ih,  # (4H, I)
    w_hh,  # (4H, H)
    b_ih,  # (4H,)
    b_hh,  # (4H,)
):
    T, B, H4 = gates.shape
    H = H4 // 4
    for b in range(B):  # copy first: h0/c0 may alias h[T]/c[T] (carried state)
        for j in range(H):
            h[0, b, j] = h0[b, j]
            c[0, b, j] = c0[b, j]
    np.dot(x.reshape(T * B, x.shape[2]), w_ih.T, gates.reshape(T * B, H4))
    bi, bf, bg, bo = b_ih[:H], b_ih[H:2 * H], b_ih[2 * H:3 * H], b_ih[3 * H:]  # (H,) each
    ci, cf, cg, co = b_hh[:H], b_hh[H:2 * H], b_hh[2 * H:3 * H], b_hh[3 * H:]  # (H,) each
    for t in range(T):
        np.dot(h[t], w_hh.T, hw)
        for b in range(B):  # 1-D row slices per gate block: LLVM then vectorizes the j loop
            zb, wb = gates[t, b], hw[b]  # (4H,)
            zi, zf, zg, zo = zb[:H], zb[H:2 * H], zb[2 * H:3 * H], zb[3 * H:]  # (H,) each
            wi, wf, wg, wo = wb[:H], wb[H:2 * H], wb[2 * H:3 * H], wb[3 * H:]  # (H,) each
            cp, cn, hn = c[t, b], c[t + 1, b], h[t + 1, b]  # (H,)
            for j in range(H):
                i = sigmoid_f(zi[j] + wi[j] + bi[j] + ci[j])
                f = sigmoid_f(zf[j] + wf[j] + bf[j] + cf[j])
                g = tanh_f(zg[j] + wg[j] + bg[j] + cg[j])
                o = sigmoid_f(zo[j] + wo[j] + bo[j] + co[j])
                zi[j] = i
                zf[j] = f
                zg[j] = g
                zo[j] = o
                cc = f * cp[j] + i * g
                cn[j] = cc
                hn[j] = o * tanh_f(cc)


@kernel
def lstm_backward(
    dw_ih,  # (4H, I) out
    dw_hh,  # (4H, H) out
    db_ih,  # (4H,) out
    db_hh,  # (4H,) out
    dx,  # (T, B, I) out
    dh0,  # (B, H) out
    dc0,  # (B, H) out
    dgates,  # (T, B, 4H) scratch: dLoss/dz
    dh,  # (B, H) scratch
    dc,  # (B, H) scratch
    h,  # (T+1, B, H) from forward
    c,  # (T+1, B, H) from forward
    gates,  # (T, B, 4H) from forward
    x,  # (T, B, I)
    w_ih,  # (4H, I)
    w_hh,  # (4H, H)
    dhs,  # (T, B, H) dLoss/dh_t from above
    dhT,  # (B, H) dLoss/dh_{T-1} from the future
    dcT,  # (B, H) dLoss/dc_{T-1} from the future
):
    T, B, H4 = gates.shape
    H = H4 // 4
    N = T * B
    for b in range(B):
        for j in range(H):
            dh[b, j] = dhT[b, j]
            dc[b, j] = dcT[b, j]
    for t in range(T - 1, -1, -1):
        for b in range(B):  # 1-D row slices per gate block, as in forward
            ab, db = gates[t, b], dgates[t, b]  # (4H,)
            ai, af, ag, ao = ab[:H], ab[H:2 * H], ab[2 * H:3 * H], ab[3 * H:]  # (H,) each
            di, df, dg, do = db[:H], db[H:2 * H], db[2 * H:3 * H], db[3 * H:]  # (H,) each
            cp, cn, dht, dhb, dcb = c[t, b], c[t + 1, b], dhs[t, b], dh[b], dc[b]  # (H,)
            for j in range(H):
                i = ai[j]
                f = af[j]
                g = ag[j]
                o = ao[j]
                tc = tanh_f(cn[j])
                dhh = dht[j] + dhb[j]
                dcc = dcb[j] + dhh * o * (_ONE - tc * tc)
                di[j] = dcc * g * i * (_ONE - i)
                df[j] = dcc * cp[j] * f * (_ONE - f)
                dg[j] = dcc * i * (_ONE - g * g)
                do[j] = dhh * tc * o * (_ONE - o)
                dcb[j] = dcc * f
        np.dot(dgates[t], w_hh, dh)
    for b in range(B):
        for j in range(H):
            dh0[b, j] = dh[b, j]
            dc0[b, j] = dc[b, j]
    dz2 = dgates.reshape(N, H4)  # (N, 4H)
    np.dot(dz2.T, x.reshape(N, x.shape[2]), dw_ih)
    np.dot(dz2.T, h[:T].reshape(N, H), dw_hh)
    np.dot(dz2, w_ih, dx.reshape(N, x.shape[2]))
    for k in range(H4):
        db_ih[k] = 0
    for n in range(N):
        row = dz2[n]  # (4H,)
        for k in range(H4):
            db_ih[k] += row[k]
    for k in range(H4):
        db_hh[k] = db_ih[k]


def forward(ws, x, h0, c0, w_ih, w_hh, b_ih, b_hh, relu=False):
    """Run the window: fills ws.hs, ws.cs, ws.gates (relu is ignored: LSTM has fixed activations)."""
    lstm_forward(ws.h, ws.c, ws.gates, ws.hw, x, h0, c0, w_ih, w_hh, b_ih, b_hh)


def backward(ws, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dhT, dcT,
             dw_ih, dw_hh, db_ih, db_hh, dx, dh0, dc0, relu=False):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every d* output.

    h0/c0 are read from ws (forward stored them), so a caller may pass views that the
    forward of the next window has since overwritten.
    """
    lstm_backward(dw_ih, dw_hh, db_ih, db_hh, dx, dh0, dc0, ws.dgates, ws.dh, ws.dc,
                  ws.h, ws.c, ws.gates, x, w_ih, w_hh, dhs, dhT, dcT)
