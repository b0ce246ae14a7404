"""GRU cell over a window of T steps in NumPy (PyTorch nn.GRU, gates r, z, n; see ``cpu/gru.py``).

Equations, per step t with h_{-1} = h0:
    r = sigmoid(x_t W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)
    z = sigmoid(x_t W_iz^T + b_iz + h_{t-1} W_hz^T + b_hz)
    n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

Memory, floats: h (T+1)BH, gates 3TBH, hn TBH, dgi/dgh 6TBH, step scratch ~6BH, weight copies
3H(I+H)  ->  about 10*T*B*H.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

G = 3


class Workspace(NamedTuple):
    h: np.ndarray  # (T+1, B, H) h[0] = h0, h[t+1] = h_t
    hs: np.ndarray  # (T, B, H) view h[1:]: the layer's outputs
    g: np.ndarray  # (T, B, 3H) input projection, then activated r, z, n
    hn: np.ndarray  # (T, B, H) h_{t-1} W_hn^T + b_hn
    hw: np.ndarray  # (B, 3H) h_{t-1} W_hh^T + b_hh of the current step
    dgi: np.ndarray  # (T, B, 3H) input-side dLoss/dpre: dr, dz, dn
    dgh: np.ndarray  # (T, B, 3H) hidden-side dLoss/dpre: dr, dz, dn * r
    dh: np.ndarray  # (B, H) dLoss/dh carried backwards
    s: np.ndarray  # (3, B, H) step scratch
    w: list  # [w_ih (3H, I), w_hh (3H, H), b_hh (3H,)]: forward's copies


def alloc(T, B, I, H, dtype=np.float32):
    """Workspace for windows of T steps, batch B, input size I, hidden size H."""
    z = lambda *shape: np.zeros(shape, dtype)
    h = z(T + 1, B, H)
    return Workspace(h=h, hs=h[1:], g=z(T, B, G * H), hn=z(T, B, H), hw=z(B, G * H), dgi=z(T, B, G * H),
                     dgh=z(T, B, G * H), dh=z(B, H), s=z(3, B, H), w=[z(G * H, I), z(G * H, H), z(G * H)])


def _sigmoid(a, out):
    np.negative(a, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)


def forward(ws, x, state0, w):
    """Run the window: fills ws.hs, ws.g, ws.hn. x (T, B, I); state0.h (B, H); w: CellWeights."""
    T, B, I = x.shape
    H = state0.h.shape[1]
    w_ih, w_hh, b_hh = ws.w
    np.copyto(w_ih, w.w_ih)
    np.copyto(w_hh, w.w_hh)
    np.copyto(b_hh, w.b_hh)
    ws.h[0] = state0.h
    g2 = ws.g.reshape(T * B, G * H)
    np.matmul(x.reshape(T * B, I), w_ih.T, out=g2)  # one GEMM for the window's input projection
    g2 += w.b_ih
    for t in range(T):
        hp, g, hw = ws.h[t], ws.g[t], ws.hw  # (B, H), (B, 3H), (B, 3H)
        np.matmul(hp, w_hh.T, out=hw)
        hw += b_hh
        r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        r += hw[:, :H]
        _sigmoid(r, r)
        z += hw[:, H:2 * H]
        _sigmoid(z, z)
        ws.hn[t] = hw[:, 2 * H:]
        n += r * ws.hn[t]
        np.tanh(n, out=n)
        ht = ws.h[t + 1]
        np.subtract(hp, n, out=ht)  # h_t = n + z * (h_{t-1} - n)
        ht *= z
        ht += n


def backward(ws, grads, dx, dstate0, x, dhs, dstateT):
    """BPTT through the window of the last ``forward`` on ``ws``; overwrites every output (see the contract)."""
    T, B, I = x.shape
    H = ws.dh.shape[1]
    w_ih, w_hh, _ = ws.w
    dh, tmp, dpre = ws.dh, ws.s[0], ws.s[1]
    dh[...] = dstateT.h
    for t in range(T - 1, -1, -1):
        g = ws.g[t]
        r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        hp = ws.h[t]
        dh += dhs[t]
        di, dg = ws.dgi[t], ws.dgh[t]  # (B, 3H)
        dr, dz, dn = di[:, :H], di[:, H:2 * H], di[:, 2 * H:]
        # dn_pre = dh * (1 - z) * (1 - n^2)
        np.subtract(1, z, out=tmp)
        np.multiply(dh, tmp, out=dn)
        np.multiply(n, n, out=tmp)
        np.subtract(1, tmp, out=tmp)
        dn *= tmp
        # dz_pre = dh * (h_{t-1} - n) * z * (1 - z)
        np.subtract(hp, n, out=dz)
        dz *= dh
        np.subtract(1, z, out=tmp)
        tmp *= z
        dz *= tmp
        # dr_pre = dn_pre * hn * r * (1 - r)
        np.multiply(dn, ws.hn[t], out=dr)
        np.subtract(1, r, out=tmp)
        tmp *= r
        dr *= tmp
        dg[:, :2 * H] = di[:, :2 * H]
        np.multiply(dn, r, out=dg[:, 2 * H:])
        # dh_{t-1} = dgh W_hh + dh * z
        np.multiply(dh, z, out=dpre)
        np.matmul(dg, w_hh, out=dh)
        dh += dpre
    dstate0.h[...] = dh
    if dstate0.c is not None:
        dstate0.c.fill(0)
    dgi2, dgh2 = ws.dgi.reshape(T * B, G * H), ws.dgh.reshape(T * B, G * H)
    np.matmul(dgi2.T, x.reshape(T * B, I), out=grads.w_ih)  # weight gradients: window GEMMs
    np.matmul(dgh2.T, ws.h[:T].reshape(T * B, H), out=grads.w_hh)
    np.sum(dgi2, axis=0, out=grads.b_ih)
    np.sum(dgh2, axis=0, out=grads.b_hh)
    if dx is not None:
        np.matmul(dgi2, w_ih, out=dx.reshape(T * B, I))
