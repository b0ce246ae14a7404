"""Plain-numpy LSTM (PyTorch nn.LSTM equations, gates i, f, g, o), one Python step per time step.

Written for clarity, not speed: the oracle for every backend's LSTM kernels.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """x (T, B, I), h0/c0 (B, H) -> hs (T, B, H), cs (T, B, H), acts (T, B, 4H) activated i, f, g, o."""
    T, B, _ = x.shape
    H = h0.shape[1]
    hs = np.zeros((T, B, H), x.dtype)
    cs = np.zeros((T, B, H), x.dtype)
    acts = np.zeros((T, B, 4 * H), x.dtype)
    h, c = h0, c0
    for t in range(T):
        z = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (B, 4H)
        i = sigmoid(z[:, 0 * H:1 * H])
        f = sigmoid(z[:, 1 * H:2 * H])
        g = np.tanh(z[:, 2 * H:3 * H])
        o = sigmoid(z[:, 3 * H:4 * H])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs[t], cs[t] = h, c
        acts[t] = np.concatenate([i, f, g, o], axis=1)
    return hs, cs, acts


def backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dhT, dcT):
    """Truncated BPTT over the window. dhs (T, B, H); dhT, dcT (B, H) gradients of the final state.

    Returns a dict with dw_ih, dw_hh, db_ih, db_hh, dx, dh0, dc0.
    """
    T = x.shape[0]
    H = h0.shape[1]
    hs, cs, acts = forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    db = np.zeros_like(b_ih)
    dx = np.zeros_like(x)
    dh_next = dhT.copy()  # dLoss/dh_t flowing back from step t+1
    dc_next = dcT.copy()
    for t in reversed(range(T)):
        h_prev = h0 if t == 0 else hs[t - 1]
        c_prev = c0 if t == 0 else cs[t - 1]
        i, f, g, o = (acts[t][:, k * H:(k + 1) * H] for k in range(4))
        dh = dhs[t] + dh_next
        tc = np.tanh(cs[t])
        do = dh * tc
        dc = dc_next + dh * o * (1.0 - tc * tc)
        di = dc * g
        df = dc * c_prev
        dg = dc * i
        dz = np.concatenate(
            [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)], axis=1
        )  # (B, 4H)
        dw_ih += dz.T @ x[t]
        dw_hh += dz.T @ h_prev
        db += dz.sum(axis=0)
        dx[t] = dz @ w_ih
        dh_next = dz @ w_hh
        dc_next = dc * f
    return dict(dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db, db_hh=db.copy(), dx=dx, dh0=dh_next, dc0=dc_next)
