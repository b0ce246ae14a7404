"""Vanilla (Elman) RNN cell over a window of T steps: compiled forward and truncated-BPTT backward.

Equations (PyTorch nn.RNN), per step t with h_{-1} = h0:
    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          # (B, H)
    h_t = tanh(z_t)            (or relu(z_t) with relu=True)
Gate layout: one block, w_ih (H, I), w_hh (H, H), b_ih, b_hh (H,). c0/dcT/dc0 are accepted
for a uniform cell signature and ignored.

Speed design: the input projection of all T steps is one GEMM written straight into
``hs``; each step adds h_{t-1} W_hh^T (one GEMM into ``hw``) and activates in place.
Backward needs only the activated outputs (tanh' = 1 - h^2, relu' = [h > 0]): per step
dz_t, then dh_{t-1} = dz_t W_hh; dW_ih, dW_hh, db and dx are one GEMM (or sum) over the
window. ``h`` holds T+1 rows with row 0 = h0, so every step's previous state is h[:T].

Activation memory, floats per layer (x4 bytes in float32):
    kept for backward: h (T+1)BH; backward scratch: dz TBH, hw BH, dh BH
    ->  about 2*T*B*H per layer, 2*L*T*B*H for L layers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .jit import kernel
from .mathf import tanh_f

G = 1
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    hw: np.ndarray  # (B, H) h_{t-1} W_hh^T of the current step
    dz: np.ndarray  # (T, B, H) dLoss/dz (pre-activation)
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H (I is unused)."""
    h = np.zeros((T + 1, B, H), dtype)
    return Workspace(h=h, hs=h[1:], hw=np.zeros((B, H), dtype),
                     dz=np.zeros((T, B, H), dtype), dh=np.zeros((B, H), dtype))


@kernel
def rnn_forward(
    h,  # (T+1, B, H) out: h0 then h_0..h_{T-1}
    hw,  # (B, H) scratch
    x,  # (T, B, I)
    h0,  # (B, H)
    w_ih,  # (H, I)
    w_hh,  # (H, H)
    b_ih,  # (H,)
    b_hh,  # (H,)
    relu,  # bool: relu instead of tanh
):
    T = h.shape[0] - 1
    B = h.shape[1]
    H = h.shape[2]
    for b in range(B):  # copy first: h0 may alias h[T] (carried state)
        for j in range(H):
            h[0, b, j] = h0[b, j]
    np.dot(x.reshape(T * B, x.shape[2]), w_ih.T, h[1:].reshape(T * B, H))
    for t in range(T):
        np.dot(h[t], w_hh.T, hw)
        for b in range(B):  # 1-D row slices: LLVM then vectorizes the j loop
            hn, wb = h[t + 1, b], hw[b]  # (H,): hn holds x_t W_ih^T, becomes h_t
            if relu:
                for j in range(H):
                    hn[j] = max(hn[j] + wb[j] + b_ih[j] + b_hh[j], _ZERO)
            else:
                for j in range(H):
                    hn[j] = tanh_f(hn[j] + wb[j] + b_ih[j] + b_hh[j])


@kernel
def rnn_backward(
    dw_ih,  # (H, I) out
    dw_hh,  # (H, H) out
    db_ih,  # (H,) out
    db_hh,  # (H,) out
    dx,  # (T, B, I) out
    dh0,  # (B, H) out
    dz,  # (T, B, H) scratch: dLoss/dz
    dh,  # (B, H) scratch
    h,  # (T+1, B, H) from forward
    x,  # (T, B, I)
    w_ih,  # (H, I)
    w_hh,  # (H, H)
    dhs,  # (T, B, H) dLoss/dh_t from above
    dhT,  # (B, H) dLoss/dh_{T-1} from the future
    relu,  # bool
):
    T, B, H = dz.shape
    N = T * B
    for b in range(B):
        for j in range(H):
            dh[b, j] = dhT[b, j]
    for t in range(T - 1, -1, -1):
        for b in range(B):
            hn, dzb, dht, dhb = h[t + 1, b], dz[t, b], dhs[t, b], dh[b]  # (H,)
            if relu:
                for j in range(H):
                    dzb[j] = (dht[j] + dhb[j]) if hn[j] > _ZERO else _ZERO
            else:
                for j in range(H):
                    dzb[j] = (dht[j] + dhb[j]) * (_ONE - hn[j] * hn[j])
        np.dot(dz[t], w_hh, dh)
    for b in range(B):
        for j in range(H):
            dh0[b, j] = dh[b, j]
    dz2 = dz.reshape(N, H)  # (N, H)
    np.dot(dz2.T, x.reshape(N, x.shape[2]), dw_ih)
    np.dot(dz2.T, h[:T].reshape(N, H), dw_hh)
    np.dot(dz2, w_ih, dx.reshape(N, x.shape[2]))
    for k in range(H):
        db_ih[k] = 0
    for n in range(N):
        row = dz2[n]  # (H,)
        for k in range(H):
            db_ih[k] += row[k]
    for k in range(H):
        db_hh[k] = db_ih[k]


def forward(ws, x, h0, c0, w_ih, w_hh, b_ih, b_hh, relu=False):
    """Run the window: fills ws.hs (c0 is ignored)."""
    rnn_forward(ws.h, ws.hw, x, h0, w_ih, w_hh, b_ih, b_hh, bool(relu))


def backward(ws, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dhT, dcT,
             dw_ih, dw_hh, db_ih, db_hh, dx, dh0, dc0, relu=False):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every d* output.

    h0 is read from ws (forward stored it); c0, dcT are ignored and dc0 is zeroed.
    """
    rnn_backward(dw_ih, dw_hh, db_ih, db_hh, dx, dh0, ws.dz, ws.dh, ws.h, x, w_ih, w_hh, dhs, dhT, bool(relu))
    if dc0 is not None:
        dc0.fill(0)
