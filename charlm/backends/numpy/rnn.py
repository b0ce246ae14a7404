"""Vanilla RNN cell over a window of T steps in NumPy (PyTorch nn.RNN, tanh or relu; see ``cpu/rnn.py``).

    h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)

Memory, floats: h (T+1)BH, dz TBH, step scratch BH, weight copies H(I+H)  ->  about 2*T*B*H.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

G = 1


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    dz: np.ndarray  # (T, B, H) dLoss/dpre
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards
    hw: np.ndarray  # (B, H) h_{t-1} W_hh^T of the current step
    w: list  # [w_ih (H, I), w_hh (H, H)]: forward's copies
    relu: bool


def alloc(T, B, I, H, dtype=np.float32, relu=False):
    """Workspace for windows of T steps, batch B, input size I, hidden size H; relu picks the activation."""
    z = lambda *shape: np.zeros(shape, dtype)
    h = z(T + 1, B, H)
    return Workspace(h=h, hs=h[1:], dz=z(T, B, H), dh=z(B, H), hw=z(B, H), w=[z(H, I), z(H, H)], relu=bool(relu))


def forward(ws, x, state0, w):
    """Run the window: fills ws.hs. x (T, B, I); state0.h (B, H); w: CellWeights."""
    T, B, I = x.shape
    H = state0.h.shape[1]
    w_ih, w_hh = ws.w
    np.copyto(w_ih, w.w_ih)
    np.copyto(w_hh, w.w_hh)
    ws.h[0] = state0.h
    hs2 = ws.hs.reshape(T * B, H)
    np.matmul(x.reshape(T * B, I), w_ih.T, out=hs2)  # one GEMM for the window's input projection
    hs2 += w.b_ih
    hs2 += w.b_hh
    for t in range(T):
        ht = ws.h[t + 1]
        np.matmul(ws.h[t], w_hh.T, out=ws.hw)
        ht += ws.hw
        if ws.relu:
            np.maximum(ht, 0, out=ht)
        else:
            np.tanh(ht, out=ht)


def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output (see the contract)."""
    T, B, I = x.shape
    H = ws.dh.shape[1]
    w_ih, w_hh = ws.w
    dh = ws.dh
    dh[...] = dstateT.h
    for t in range(T - 1, -1, -1):
        ht, dz = ws.h[t + 1], ws.dz[t]
        dh += dhs[t]
        if ws.relu:
            np.multiply(dh, ht > 0, out=dz)
        else:
            np.multiply(ht, ht, out=dz)
            np.subtract(1, dz, out=dz)
            dz *= dh
        np.matmul(dz, w_hh, out=dh)
    dstate0.h[...] = dh
    if dstate0.c is not None:
        dstate0.c.fill(0)
    dz2 = ws.dz.reshape(T * B, H)
    np.matmul(dz2.T, x.reshape(T * B, I), out=grads.w_ih)  # weight gradients: window GEMMs
    np.matmul(dz2.T, ws.h[:T].reshape(T * B, H), out=grads.w_hh)
    np.sum(dz2, axis=0, out=grads.b_ih)
    grads.b_hh[...] = grads.b_ih
    if dx is not None:
        np.matmul(dz2, w_ih, out=dx.reshape(T * B, I))
