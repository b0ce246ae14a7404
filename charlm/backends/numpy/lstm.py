"""LSTM cell over a window of T steps in NumPy (PyTorch nn.LSTM, gates i, f, g, o; see ``cpu/lstm.py``).

Equations, per step t with h_{-1} = h0, c_{-1} = c0:
    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          # (B, 4H)
    i, f, o = sigmoid(z_i, z_f, z_o)   g = tanh(z_g)
    c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)

Memory, floats: h, c 2(T+1)BH, gates 4TBH, tanh(c) TBH, dgates 4TBH, step scratch ~4BH,
weight copies 4H(I+H)  ->  about 11*T*B*H.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .gru import _sigmoid

G = 4


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    c: np.ndarray  # (T+1, B, H) c[0] = c0, c[t+1] = c_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    cs: np.ndarray  # (T, B, H) view c[1:]
    g: np.ndarray  # (T, B, 4H) input projection, then activated i, f, g, o
    tc: np.ndarray  # (T, B, H) tanh(c_t)
    dg: np.ndarray  # (T, B, 4H) dLoss/dz (pre-activation)
    hw: np.ndarray  # (B, 4H) h_{t-1} W_hh^T of the current step
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards
    dc: np.ndarray  # (B, H) dLoss/dc carried backwards
    s: np.ndarray  # (2, B, H) step scratch
    w: list  # [w_ih (4H, I), w_hh (4H, H)]: forward's copies


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H."""
    z = lambda *shape: np.zeros(shape, dtype)
    h, c = z(T + 1, B, H), z(T + 1, B, H)
    return Workspace(h=h, c=c, hs=h[1:], cs=c[1:], g=z(T, B, G * H), tc=z(T, B, H), dg=z(T, B, G * H), hw=z(B, G * H),
                     dh=z(B, H), dc=z(B, H), s=z(2, B, H), w=[z(G * H, I), z(G * H, H)])


def forward(ws, x, state0, w):
    """Run the window: fills ws.hs, ws.cs, ws.g, ws.tc. x (T, B, I); state0: CellState(h, c) (B, H)."""
    T, B, I = x.shape
    H = state0.h.shape[1]
    w_ih, w_hh = ws.w
    np.copyto(w_ih, w.w_ih)
    np.copyto(w_hh, w.w_hh)
    ws.h[0] = state0.h
    if state0.c is None:
        ws.c[0] = 0
    else:
        ws.c[0] = state0.c
    g2 = ws.g.reshape(T * B, G * H)
    np.matmul(x.reshape(T * B, I), w_ih.T, out=g2)  # one GEMM for the window's input projection
    g2 += w.b_ih
    g2 += w.b_hh
    for t in range(T):
        g = ws.g[t]  # (B, 4H)
        np.matmul(ws.h[t], w_hh.T, out=ws.hw)
        g += ws.hw
        i, f, gg, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        _sigmoid(g[:, :2 * H], g[:, :2 * H])
        np.tanh(gg, out=gg)
        _sigmoid(o, o)
        ct, tc = ws.c[t + 1], ws.tc[t]
        np.multiply(f, ws.c[t], out=ct)
        np.multiply(i, gg, out=tc)
        ct += tc
        np.tanh(ct, out=tc)
        np.multiply(o, tc, out=ws.h[t + 1])


def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output (see the contract)."""
    T, B, I = x.shape
    H = ws.dh.shape[1]
    w_ih, w_hh = ws.w
    dh, dc, tmp = ws.dh, ws.dc, ws.s[0]
    dh[...] = dstateT.h
    if dstateT.c is None:
        dc[...] = 0
    else:
        dc[...] = dstateT.c
    for t in range(T - 1, -1, -1):
        g, d = ws.g[t], ws.dg[t]  # (B, 4H)
        i, f, gg, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        di, df, dgg, do = d[:, :H], d[:, H:2 * H], d[:, 2 * H:3 * H], d[:, 3 * H:]
        tc = ws.tc[t]
        dh += dhs[t]
        # dc += dh * o * (1 - tanh(c)^2)
        np.multiply(tc, tc, out=tmp)
        np.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        # do_pre = dh * tanh(c) * o * (1 - o)
        np.multiply(dh, tc, out=do)
        np.subtract(1, o, out=tmp)
        tmp *= o
        do *= tmp
        # di_pre = dc * g * i * (1 - i);  df_pre = dc * c_{t-1} * f * (1 - f);  dg_pre = dc * i * (1 - g^2)
        np.multiply(dc, gg, out=di)
        np.subtract(1, i, out=tmp)
        tmp *= i
        di *= tmp
        np.multiply(dc, ws.c[t], out=df)
        np.subtract(1, f, out=tmp)
        tmp *= f
        df *= tmp
        np.multiply(gg, gg, out=tmp)
        np.subtract(1, tmp, out=tmp)
        tmp *= i
        np.multiply(dc, tmp, out=dgg)
        dc *= f  # dc_{t-1}
        np.matmul(d, w_hh, out=dh)  # dh_{t-1}
    dstate0.h[...] = dh
    if dstate0.c is not None:
        dstate0.c[...] = dc
    dg2 = ws.dg.reshape(T * B, G * H)
    np.matmul(dg2.T, x.reshape(T * B, I), out=grads.w_ih)  # weight gradients: window GEMMs
    np.matmul(dg2.T, ws.h[:T].reshape(T * B, H), out=grads.w_hh)
    np.sum(dg2, axis=0, out=grads.b_ih)
    grads.b_hh[...] = grads.b_ih
    if dx is not None:
        np.matmul(dg2, w_ih, out=dx.reshape(T * B, I))
