"""Plain-numpy vanilla RNN (PyTorch nn.RNN equations, tanh or relu), one Python step per time step.

Written for clarity, not speed: the oracle for every backend's RNN kernels.
"""

from __future__ import annotations

import numpy as np


def forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu=False):
    """x (T, B, I), h0 (B, H) -> hs (T, B, H)."""
    T, B, _ = x.shape
    H = h0.shape[1]
    hs = np.zeros((T, B, H), x.dtype)
    h = h0
    for t in range(T):
        z = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (B, H)
        h = np.maximum(z, 0) if relu else np.tanh(z)
        hs[t] = h
    return hs


def backward(x, h0, w_ih, w_hh, b_ih, b_hh, dhs, dhT, relu=False):
    """Truncated BPTT over the window. dhs (T, B, H); dhT (B, H) gradient of the final state.

    Returns a dict with dw_ih, dw_hh, db_ih, db_hh, dx, dh0.
    """
    T = x.shape[0]
    hs = forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    db = np.zeros_like(b_ih)
    dx = np.zeros_like(x)
    dh_next = dhT.copy()
    for t in reversed(range(T)):
        h_prev = h0 if t == 0 else hs[t - 1]
        dh = dhs[t] + dh_next
        dz = dh * (hs[t] > 0) if relu else dh * (1.0 - hs[t] * hs[t])  # (B, H)
        dw_ih += dz.T @ x[t]
        dw_hh += dz.T @ h_prev
        db += dz.sum(axis=0)
        dx[t] = dz @ w_ih
        dh_next = dz @ w_hh
    return dict(dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db, db_hh=db.copy(), dx=dx, dh0=dh_next)
