"""GRU cell over a window of T steps on the device: forward and truncated-BPTT backward.

Equations and gate order exactly as the CPU cell (PyTorch nn.GRU, gates r, z, n):
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))  h_t = (1 - z) * n + z * h_{t-1}
The hidden part of n sits inside r *, so the hidden projection goes to its own buffer ``hw``
and backward keeps both pre-activation gradients: input side (``dgi``) and hidden side
(``dgh``, with dn * r); forward's buffers stay as they were, so backward may run again.

Launches, as for the LSTM (see ``lstm``'s docstring for the per-step-launch choice and the
persistent-kernel alternative): one GEMM X W_ih^T for the window; per step the GEMM
hw = h[t] W_hh^T and one fused gate kernel. Backward per step: one fused kernel (which also
leaves z * dh_t in dh), then the accumulating GEMM dh += dgh_t W_hh; then the window GEMMs.
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

G = 3
_ONE = f32(1.0)


class Workspace(NamedTuple):
    h: object  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    hs: object  # (T, B, H) view h[1:]: the layer's outputs
    gates: object  # (T, B, 3H) input projection, then activated r, z, n
    hn: object  # (T, B, H) W_hn h_{t-1} + b_hn (the n gate's hidden part, before r *)
    hw: object  # (B, 3H) h_{t-1} W_hh^T of the current step
    dgi: object  # (T, B, 3H) input-side dLoss/dpre: dr, dz, dn
    dgh: object  # (T, B, 3H) hidden-side dLoss/dpre: dr, dz, dn * r
    dh: object  # (B, H) dLoss/dh carried backwards
    w_ih: object  # (3H, I) copy of the forward's w_ih (backward reads it)
    w_hh: object  # (3H, H) copy of the forward's w_hh


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H."""
    h = zeros((T + 1, B, H), dtype)
    return Workspace(h=h, hs=h[1:], gates=zeros((T, B, G * H), dtype), hn=zeros((T, B, H), dtype),
                     hw=zeros((B, G * H), dtype), dgi=zeros((T, B, G * H), dtype), dgh=zeros((T, B, G * H), dtype),
                     dh=zeros((B, H), dtype), w_ih=zeros((G * H, I), dtype), w_hh=zeros((G * H, H), dtype))


@jit
def _gates_step(
    g,  # (B, 3H) in: x W_ih^T; out: activated r, z, n
    hw,  # (B, 3H) h_{t-1} W_hh^T
    hp,  # (B, H) h_{t-1}
    ht,  # (B, H) out: h_t
    hnt,  # (B, H) out: W_hn h_{t-1} + b_hn
    b_ih,  # (3H,)
    b_hh,  # (3H,)
):
    B, H = ht.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        # sigmoid written out: no device-function call, so cuda.compile_ptx needs no driver
        r = _ONE / (_ONE + math.exp(-(g[b, j] + b_ih[j] + hw[b, j] + b_hh[j])))
        z = _ONE / (_ONE + math.exp(-(g[b, H + j] + b_ih[H + j] + hw[b, H + j] + b_hh[H + j])))
        a = hw[b, 2 * H + j] + b_hh[2 * H + j]
        n = math.tanh(g[b, 2 * H + j] + b_ih[2 * H + j] + r * a)
        g[b, j] = r
        g[b, H + j] = z
        g[b, 2 * H + j] = n
        hnt[b, j] = a
        ht[b, j] = n + z * (hp[b, j] - n)


@jit
def _dgates_step(
    di,  # (B, 3H) out: input-side dLoss/dpre
    g,  # (B, 3H) activated r, z, n
    dg,  # (B, 3H) out: hidden-side dLoss/dpre
    hp,  # (B, H) h_{t-1}
    hnt,  # (B, H) W_hn h_{t-1} + b_hn
    dht,  # (B, H) dLoss/dh_t from above
    dh,  # (B, H) in: dLoss/dh_t from the future; out: z * (total dLoss/dh_t), the direct path
):
    B, H = hp.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        r = g[b, j]
        z = g[b, H + j]
        n = g[b, 2 * H + j]
        d = dht[b, j] + dh[b, j]
        dn = (d - d * z) * (_ONE - n * n)
        dr = dn * hnt[b, j] * (r - r * r)
        dz = d * (hp[b, j] - n) * (z - z * z)
        di[b, j] = dr
        di[b, H + j] = dz
        di[b, 2 * H + j] = dn
        dg[b, j] = dr
        dg[b, H + j] = dz
        dg[b, 2 * H + j] = dn * r
        dh[b, j] = d * z


def forward(ws, x, state0, w):
    """Run the window: fills ws.hs, ws.gates, ws.hn. x (T, B, I); state0.h (B, H) (no cell state); w: CellWeights."""
    T, B, H3 = ws.gates.shape
    N = T * B
    copy(ws.w_ih, w.w_ih)
    copy(ws.w_hh, w.w_hh)
    copy(ws.h[0], state0.h)  # first: h0 may alias h[T] (carried state)
    gemm(ws.gates.reshape(N, H3), x.reshape(N, x.shape[2]), w.w_ih, tb=True)
    blocks, threads = launch.grid1d(B * (H3 // 3))
    for t in range(T):
        gemm(ws.hw, ws.h[t], w.w_hh, tb=True)
        _gates_step[blocks, threads](ws.gates[t], ws.hw, ws.h[t], ws.h[t + 1], ws.hn[t], w.b_ih, w.b_hh)


def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output (as the CPU cell).

    Reads forward's buffers without changing them, so it may run again after the same forward.
    """
    T, B, H3 = ws.gates.shape
    H = H3 // 3
    N = T * B
    g = grads
    copy(ws.dh, dstateT.h)
    blocks, threads = launch.grid1d(B * H)
    for t in range(T - 1, -1, -1):
        _dgates_step[blocks, threads](ws.dgi[t], ws.gates[t], ws.dgh[t], ws.h[t], ws.hn[t], dhs[t], ws.dh)
        gemm(ws.dh, ws.dgh[t], ws.w_hh, acc=True)
    copy(dstate0.h, ws.dh)
    if dstate0.c is not None:
        fill(dstate0.c, 0)
    dx2 = ws.dgi.reshape(N, H3)  # (N, 3H) input-side dpre
    dh2 = ws.dgh.reshape(N, H3)  # (N, 3H) hidden-side dpre
    I = x.shape[2]
    gemm(g.w_ih, dx2, x.reshape(N, I), ta=True)
    gemm(g.w_hh, dh2, ws.h[:T].reshape(N, H), ta=True)
    gemm(dx.reshape(N, I), dx2, ws.w_ih)
    colsum(g.b_ih, dx2)
    colsum(g.b_hh, dh2)
