"""Plain-numpy GRU (PyTorch nn.GRU equations, gates r, z, n), one Python step per time step.

Written for clarity, not speed: the oracle for every backend's GRU kernels.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    """x (T, B, I), h0 (B, H) -> hs (T, B, H), acts (T, B, 4H) holding r, z, n and W_hn h + b_hn."""
    T, B, _ = x.shape
    H = h0.shape[1]
    hs = np.zeros((T, B, H), x.dtype)
    acts = np.zeros((T, B, 4 * H), x.dtype)
    h = h0
    for t in range(T):
        gx = x[t] @ w_ih.T + b_ih  # (B, 3H)
        gh = h @ w_hh.T + b_hh  # (B, 3H)
        r = sigmoid(gx[:, 0:H] + gh[:, 0:H])
        z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        hn = gh[:, 2 * H:3 * H]
        n = np.tanh(gx[:, 2 * H:3 * H] + r * hn)
        h = (1.0 - z) * n + z * h
        hs[t] = h
        acts[t] = np.concatenate([r, z, n, hn], axis=1)
    return hs, acts


def backward(x, h0, w_ih, w_hh, b_ih, b_hh, dhs, dhT):
    """Truncated BPTT over the window. dhs (T, B, H); dhT (B, H) gradient of the final state.

    Returns a dict with dw_ih, dw_hh, db_ih, db_hh, dx, dh0.
    """
    T = x.shape[0]
    H = h0.shape[1]
    hs, acts = forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    db_ih = np.zeros_like(b_ih)
    db_hh = np.zeros_like(b_hh)
    dx = np.zeros_like(x)
    dh_next = dhT.copy()  # dLoss/dh_t flowing back from step t+1
    for t in reversed(range(T)):
        h_prev = h0 if t == 0 else hs[t - 1]
        r, z, n, hn = (acts[t][:, k * H:(k + 1) * H] for k in range(4))
        dh = dhs[t] + dh_next
        dn = dh * (1.0 - z)
        dz = dh * (h_prev - n)
        dn_pre = dn * (1.0 - n * n)  # d(xn + r * hn)
        dr = dn_pre * hn
        dr_pre = dr * r * (1.0 - r)
        dz_pre = dz * z * (1.0 - z)
        dgx = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)  # (B, 3H) d(x W_ih^T + b_ih)
        dgh = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)  # (B, 3H) d(h W_hh^T + b_hh)
        dw_ih += dgx.T @ x[t]
        dw_hh += dgh.T @ h_prev
        db_ih += dgx.sum(axis=0)
        db_hh += dgh.sum(axis=0)
        dx[t] = dgx @ w_ih
        dh_next = dgh @ w_hh + dh * z
    return dict(dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh, dx=dx, dh0=dh_next)
