"""Vanilla (Elman) RNN cell over a window of T steps on the device: forward and truncated BPTT.

Equations exactly as the CPU cell (PyTorch nn.RNN):
    h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)     (relu instead of tanh with relu=True)
c0/dcT/dc0 are accepted for a uniform cell signature (dc0 is zeroed).

Launches, as for the LSTM (see ``lstm``'s docstring for the per-step-launch choice and the
persistent-kernel alternative): one GEMM h[1:] = X W_ih^T for the window; per step the
accumulating GEMM h[t+1] += h[t] W_hh^T, then one kernel adds the biases and activates.
Backward per step: one kernel dz_t = (dhs_t + dh) * act'(h_t) (tanh' = 1 - h^2, relu' = [h > 0]),
then the GEMM dh = dz_t W_hh; then the window GEMMs and bias sums.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda

from . import launch
from .elementwise import copy, fill, zeros
from .gemm import colsum, gemm
from .launch import f32, jit

G = 1
_ONE = f32(1.0)
_ZERO = f32(0.0)


class Workspace(NamedTuple):
    h: object  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    hs: object  # (T, B, H) view h[1:]: the layer's outputs
    dz: object  # (T, B, H) dLoss/dz (pre-activation)
    dh: object  # (B, H) dLoss/dh carried backwards
    w_ih: object  # (H, I) copy of the forward's w_ih (backward reads it)
    w_hh: object  # (H, H) copy of the forward's w_hh
    relu: bool  # activation: relu (True) or tanh (False)


def alloc(T, B, I, H, dtype=np.float32, relu=False):
    """Workspace for windows of T steps, batch B, input size I, hidden size H; tanh or relu."""
    h = zeros((T + 1, B, H), dtype)
    return Workspace(h=h, hs=h[1:], dz=zeros((T, B, H), dtype), dh=zeros((B, H), dtype),
                     w_ih=zeros((H, I), dtype), w_hh=zeros((H, H), dtype), relu=bool(relu))


@jit
def _act_step(
    hn,  # (B, H) in: x W_ih^T + h W_hh^T; out: h_t
    b_ih,  # (H,)
    b_hh,  # (H,)
    relu,  # bool
):
    B, H = hn.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        z = hn[b, j] + b_ih[j] + b_hh[j]
        hn[b, j] = max(z, _ZERO) if relu else math.tanh(z)


@jit
def _dz_step(
    dz,  # (B, H) out: dLoss/dz_t
    hn,  # (B, H) h_t
    dht,  # (B, H) dLoss/dh_t from above
    dh,  # (B, H) dLoss/dh_t from the future
    relu,  # bool
):
    B, H = hn.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        y = hn[b, j]
        d = dht[b, j] + dh[b, j]
        if relu:
            dz[b, j] = d if y > _ZERO else _ZERO
        else:
            dz[b, j] = d * (_ONE - y * y)


def forward(ws, x, state0, w):
    """Run the window: fills ws.hs. x (T, B, I); state0.h (B, H); w: CellWeights (PyTorch layout)."""
    T, B, H = ws.hs.shape
    N = T * B
    copy(ws.w_ih, w.w_ih)
    copy(ws.w_hh, w.w_hh)
    copy(ws.h[0], state0.h)  # first: h0 may alias h[T] (carried state)
    gemm(ws.hs.reshape(N, H), x.reshape(N, x.shape[2]), w.w_ih, tb=True)
    blocks, threads = launch.grid1d(B * H)
    for t in range(T):
        gemm(ws.h[t + 1], ws.h[t], w.w_hh, tb=True, acc=True)
        _act_step[blocks, threads](ws.h[t + 1], w.b_ih, w.b_hh, ws.relu)


def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output (as the CPU cell)."""
    T, B, H = ws.dz.shape
    N = T * B
    g = grads
    copy(ws.dh, dstateT.h)
    blocks, threads = launch.grid1d(B * H)
    for t in range(T - 1, -1, -1):
        _dz_step[blocks, threads](ws.dz[t], ws.h[t + 1], dhs[t], ws.dh, ws.relu)
        gemm(ws.dh, ws.dz[t], ws.w_hh)
    copy(dstate0.h, ws.dh)
    if dstate0.c is not None:
        fill(dstate0.c, 0)
    dz2 = ws.dz.reshape(N, H)  # (N, H)
    I = x.shape[2]
    gemm(g.w_ih, dz2, x.reshape(N, I), ta=True)
    gemm(g.w_hh, dz2, ws.h[:T].reshape(N, H), ta=True)
    gemm(dx.reshape(N, I), dz2, ws.w_ih)
    colsum(g.b_ih, dz2, g.b_hh)
