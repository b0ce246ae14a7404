"""Vanilla (Elman) RNN cell over a window of T steps: compiled forward and truncated-BPTT backward.

Equations (PyTorch nn.RNN), per step t with h_{-1} = h0:
    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          # (B, H)
    h_t = tanh(z_t)            (or relu(z_t) with relu=True)
Gate layout: one block, w_ih (H, I), w_hh (H, H), b_ih, b_hh (H,). c0/dcT/dc0 are accepted
for a uniform cell signature and ignored.

Speed design (threads: see ``recurrent``; with one gate the chunk order is PyTorch's order, so
nothing is permuted): the input projection of all T steps is one GEMM written straight into
``hs`` (split over rows). The recurrence splits the hidden units: at each step thread k adds
h_{t-1} W_hh[its units]^T into its columns of h_t (a GEMM with beta = 1, all B rows) and
activates them in place; one fork-join per step. Backward needs only the activated outputs
(tanh' = 1 - h^2, relu' = [h > 0]): per step and unit chunk dh_t = dz_{t+1} W_hh[:, its units],
then dz_t (summing the bias gradients); dW_ih, dW_hh and dx are window GEMMs. ``h`` holds T+1
rows with row 0 = h0, so every step's previous state is h[:T].

Activation memory, floats per layer (x4 bytes in float32):
    kept for backward: h (T+1)BH; backward scratch: dz TBH, dh BH
    ->  about 2*T*B*H per layer, 2*L*T*B*H for L layers.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import prange

from .blas import gemm
from .jit import kernel
from .mathf import tanh_f
from .recurrent import project, split, weight_grads

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


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H (I is unused)."""
    h = np.zeros((T + 1, B, H), dtype)
    return Workspace(h=h, hs=h[1:], dz=np.zeros((T, B, H), dtype), dh=np.zeros((B, H), dtype),
                     bias=np.zeros(H, dtype), dbs=np.zeros((2, H), dtype), nc=np.ones(1, np.int64))


@kernel
def _fwd_units(
    h,  # (T+1, B, H) in: h_{t-1} (row t), x_t W_ih^T (row t+1); out: h_t, units u0..u1
    w_hh,  # (H, H)
    bias,  # (H,)
    relu,  # bool
    t, u0, u1,
):
    B = h.shape[1]
    H = h.shape[2]
    hk = u1 - u0
    gemm(False, True, B, hk, H, 1.0, h, t * B * H, H, w_hh, u0 * H, H, 1.0, h, ((t + 1) * B) * H + u0, H)
    bb = bias[u0:u1]  # (hk,)
    for b in range(B):  # 1-D row slices: LLVM then vectorizes the j loop
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
    w_hh,  # (H, H)
    bias,  # (H,) b_ih + b_hh
    relu,  # bool: relu instead of tanh
    nc,  # unit chunks
):
    T = h.shape[0] - 1
    H = h.shape[2]
    for t in range(T):
        for k in prange(nc):
            _fwd_units(h, w_hh, bias, relu, t, k * H // nc, (k + 1) * H // nc)


@kernel
def _bwd_units(
    dz,  # (T, B, H) out: row t, units u0..u1
    dbs,  # (H,) in/out: bias-gradient sums
    dh,  # (B, H) scratch (this chunk's units)
    h,  # (T+1, B, H) from forward
    w_hh,  # (H, H)
    dhs,  # (T, B, H) dLoss/dh_t from above
    relu,  # bool
    t, u0, u1,
):
    T, B, H = dz.shape
    hk = u1 - u0
    if t < T - 1:  # dh_t = dz_{t+1} W_hh for this chunk's units
        gemm(False, False, B, hk, H, 1.0, dz, (t + 1) * B * H, H, w_hh, u0, H, 0.0, dh, u0, H)
    sb = dbs[u0:u1]  # (hk,)
    for b in range(B):
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
    dbs,  # (2, H) out: bias gradients (both rows)
    dh,  # (B, H) scratch
    h,  # (T+1, B, H) from forward
    w_hh,  # (H, H)
    dhs,  # (T, B, H) dLoss/dh_t from above
    dhT,  # (B, H) dLoss/dh_{T-1} from the future
    relu,  # bool
    nc,  # unit chunks
):
    T, B, H = dz.shape
    for b in range(B):
        for j in range(H):
            dh[b, j] = dhT[b, j]
    for k in range(H):
        dbs[0, k] = 0
    for t in range(T - 1, -1, -1):
        for k in prange(nc):
            _bwd_units(dz, dbs[0], dh, h, w_hh, dhs, relu, t, k * H // nc, (k + 1) * H // nc)
    gemm(False, False, B, H, H, 1.0, dz, 0, H, w_hh, 0, H, 0.0, dh0, 0, H)  # dh0 = dz_0 W_hh (one small GEMM)
    for k in range(H):
        dbs[1, k] = dbs[0, k]


def forward(ws, x, h0, c0, w_ih, w_hh, b_ih, b_hh, relu=False):
    """Run the window: fills ws.hs (c0 is ignored)."""
    nc = split(h0.shape[1])
    ws.nc[0] = nc
    np.add(b_ih, b_hh, out=ws.bias)
    np.copyto(ws.h[0], h0)  # first: h0 may alias h[T] (carried state), which the projection overwrites
    project(ws.hs, x, w_ih, numba.get_num_threads())
    rnn_forward(ws.h, w_hh, ws.bias, bool(relu), nc)


def backward(ws, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dhT, dcT,
             dw_ih, dw_hh, db_ih, db_hh, dx, dh0, dc0, relu=False):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every d* output.

    h0 is read from ws (forward stored it); c0, dcT are ignored and dc0 is zeroed.
    """
    nc = int(ws.nc[0])
    rnn_backward(dh0, ws.dz, ws.dbs, ws.dh, ws.h, w_hh, dhs, dhT, bool(relu), nc)
    weight_grads(dw_ih, dw_hh, db_ih, db_hh, dx, dw_ih, dw_hh, ws.dz, ws.dz, ws.dbs, x, ws.h, w_ih, G, nc)
    if dc0 is not None:
        dc0.fill(0)
