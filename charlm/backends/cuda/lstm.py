"""LSTM cell over a window of T steps on the device: forward and truncated-BPTT backward.

Equations and gate order exactly as the CPU cell (PyTorch nn.LSTM, gates i, f, g, o):
    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh;  i, f, o = sigmoid, g = tanh
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)

Launches (data stays on the device; the host only enqueues kernels):
    forward   copy h0, c0 -> h[0], c[0]; one GEMM gates (N, 4H) = X W_ih^T for all T steps;
              per step: GEMM gates[t] += h[t] W_hh^T (accumulating), then ONE fused gate kernel
              (a thread per (b, j): biases, activations, c and h).
    backward  per step: ONE fused gate-gradient kernel (dz_t and the carried dc), then the GEMM
              dh = dz_t W_hh; after the loop dW_ih, dW_hh, dx as GEMMs over the window and db as
              column sums.
Two launches per step, so a step costs at least ~2 launch latencies (~5-10 us each, more with
Python dispatch). The alternative is a persistent kernel: one cooperative launch per window
whose blocks each own a slice of W_hh (kept in shared memory / registers) and meet at a
grid-wide barrier per step. It removes the launch cost and the re-reading of W_hh, but needs
cooperative launch, W_hh small enough to stay resident across the SMs (4H*H*4 bytes: 4 MB at
H=512, too much for smaller GPUs), a hand-written matvec and grid sync, and it cannot be tested
on the simulator in a meaningful way; per-step launches are the simple, portable design.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda

from . import launch
from .elementwise import copy, zeros
from .gemm import colsum, gemm
from .launch import f32, jit

G = 4
_ONE = f32(1.0)


class Workspace(NamedTuple):
    h: object  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    c: object  # (T+1, B, H) c[0] = c0, c[t+1] = c_t
    hs: object  # (T, B, H) view h[1:]: the layer's outputs
    cs: object  # (T, B, H) view c[1:]
    gates: object  # (T, B, 4H) input projection (+ hidden, per step), then activated i, f, g, o
    dgates: object  # (T, B, 4H) dLoss/dz (pre-activation)
    dh: object  # (B, H) dLoss/dh carried backwards
    dc: object  # (B, H) dLoss/dc carried backwards
    w_ih: object  # (4H, I) copy of the forward's w_ih (backward reads it)
    w_hh: object  # (4H, H) copy of the forward's w_hh


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H."""
    h = zeros((T + 1, B, H), dtype)
    c = zeros((T + 1, B, H), dtype)
    return Workspace(h=h, c=c, hs=h[1:], cs=c[1:], gates=zeros((T, B, G * H), dtype),
                     dgates=zeros((T, B, G * H), dtype), dh=zeros((B, H), dtype), dc=zeros((B, H), dtype),
                     w_ih=zeros((G * H, I), dtype), w_hh=zeros((G * H, H), dtype))


@jit
def _gates_step(
    z,  # (B, 4H) in: x W_ih^T + h W_hh^T; out: activated i, f, g, o
    cp,  # (B, H) c_{t-1}
    cn,  # (B, H) out: c_t
    hn,  # (B, H) out: h_t
    b_ih,  # (4H,)
    b_hh,  # (4H,)
):
    B, H = cn.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        # sigmoid written out: no device-function call, so cuda.compile_ptx needs no driver
        i = _ONE / (_ONE + math.exp(-(z[b, j] + b_ih[j] + b_hh[j])))
        f = _ONE / (_ONE + math.exp(-(z[b, H + j] + b_ih[H + j] + b_hh[H + j])))
        g = math.tanh(z[b, 2 * H + j] + b_ih[2 * H + j] + b_hh[2 * H + j])
        o = _ONE / (_ONE + math.exp(-(z[b, 3 * H + j] + b_ih[3 * H + j] + b_hh[3 * H + j])))
        z[b, j] = i
        z[b, H + j] = f
        z[b, 2 * H + j] = g
        z[b, 3 * H + j] = o
        cc = f * cp[b, j] + i * g
        cn[b, j] = cc
        hn[b, j] = o * math.tanh(cc)


@jit
def _dgates_step(
    dz,  # (B, 4H) out: dLoss/dz_t
    a,  # (B, 4H) activated i, f, g, o of step t
    cp,  # (B, H) c_{t-1}
    cn,  # (B, H) c_t
    dht,  # (B, H) dLoss/dh_t from above
    dh,  # (B, H) dLoss/dh_t from the future
    dc,  # (B, H) in: dLoss/dc_t from the future; out: dLoss/dc_{t-1}
):
    B, H = cn.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        i = a[b, j]
        f = a[b, H + j]
        g = a[b, 2 * H + j]
        o = a[b, 3 * H + j]
        tc = math.tanh(cn[b, j])
        dhh = dht[b, j] + dh[b, j]
        dcc = dc[b, j] + dhh * o * (_ONE - tc * tc)
        dz[b, j] = dcc * g * i * (_ONE - i)
        dz[b, H + j] = dcc * cp[b, j] * f * (_ONE - f)
        dz[b, 2 * H + j] = dcc * i * (_ONE - g * g)
        dz[b, 3 * H + j] = dhh * tc * o * (_ONE - o)
        dc[b, j] = dcc * f


def forward(ws, x, state0, w):
    """Run the window: fills ws.hs, ws.cs, ws.gates. x (T, B, I); state0 (h, c) (B, H); w: CellWeights."""
    T, B, H4 = ws.gates.shape
    N = T * B
    copy(ws.w_ih, w.w_ih)
    copy(ws.w_hh, w.w_hh)
    copy(ws.h[0], state0.h)  # first: h0/c0 may alias h[T]/c[T] (carried state)
    copy(ws.c[0], state0.c)
    gemm(ws.gates.reshape(N, H4), x.reshape(N, x.shape[2]), w.w_ih, tb=True)
    blocks, threads = launch.grid1d(B * (H4 // 4))
    for t in range(T):
        gemm(ws.gates[t], ws.h[t], w.w_hh, tb=True, acc=True)
        _gates_step[blocks, threads](ws.gates[t], ws.c[t], ws.c[t + 1], ws.h[t + 1], w.b_ih, w.b_hh)


def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output (as the CPU cell)."""
    T, B, H4 = ws.gates.shape
    H = H4 // 4
    N = T * B
    g = grads
    copy(ws.dh, dstateT.h)
    copy(ws.dc, dstateT.c)
    blocks, threads = launch.grid1d(B * H)
    for t in range(T - 1, -1, -1):
        _dgates_step[blocks, threads](ws.dgates[t], ws.gates[t], ws.c[t], ws.c[t + 1], dhs[t], ws.dh, ws.dc)
        gemm(ws.dh, ws.dgates[t], ws.w_hh)
    copy(dstate0.h, ws.dh)
    copy(dstate0.c, ws.dc)
    dz2 = ws.dgates.reshape(N, H4)  # (N, 4H)
    I = x.shape[2]
    gemm(g.w_ih, dz2, x.reshape(N, I), ta=True)
    gemm(g.w_hh, dz2, ws.h[:T].reshape(N, H), ta=True)
    gemm(dx.reshape(N, I), dz2, ws.w_ih)
    colsum(g.b_ih, dz2, g.b_hh)
