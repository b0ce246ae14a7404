"""Plain-numpy CharLM (embedding -> L recurrent layers -> linear head -> cross-entropy), forward only.

Written for clarity, not speed: one Python step per time step, PyTorch equations:
    rnn:  h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh or relu
    lstm: gates i, f, g, o;  c' = f*c + i*g;  h' = o*tanh(c')
    gru:  gates r, z, n;  n = tanh(W_in x + b_in + r*(W_hn h + b_hn));  h' = (1-z)*n + z*h
Parameters are a dict with PyTorch state-dict names (``embed.weight``, ``rnn.weight_ih_l0``, ...,
``head.weight``, ``head.bias``). The oracle for charlm.model.CharLM; gradients are checked
against finite differences, so no backward pass lives here.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def cell_step(cell, x, h, c, w_ih, w_hh, b_ih, b_hh, relu=False):
    """One time step. x (B, I), h/c (B, H) -> (h', c'); c is carried unchanged for rnn and gru."""
    H = h.shape[1]
    gi = x @ w_ih.T + b_ih  # (B, G*H)
    gh = h @ w_hh.T + b_hh  # (B, G*H)
    if cell == "rnn":
        z = gi + gh
        return (np.maximum(z, 0.0) if relu else np.tanh(z)), c
    if cell == "lstm":
        z = gi + gh
        i = sigmoid(z[:, 0 * H:1 * H])
        f = sigmoid(z[:, 1 * H:2 * H])
        g = np.tanh(z[:, 2 * H:3 * H])
        o = sigmoid(z[:, 3 * H:4 * H])
        c = f * c + i * g
        return o * np.tanh(c), c
    if cell == "gru":
        r = sigmoid(gi[:, 0 * H:1 * H] + gh[:, 0 * H:1 * H])
        z = sigmoid(gi[:, 1 * H:2 * H] + gh[:, 1 * H:2 * H])
        n = np.tanh(gi[:, 2 * H:3 * H] + r * gh[:, 2 * H:3 * H])
        return (1.0 - z) * n + z * h, c
    raise ValueError(f"unknown cell {cell!r}")


def dropout_masks(config, T, B, rng, dtype=np.float64):
    """The masks CharLM.train_step draws: per layer below the top, keep = U[0,1) (float32) >= p, scaled 1/(1-p).

    One (T, B, H) draw per layer boundary, bottom layer first.
    """
    p = config.dropout
    out = []
    for _ in range(config.layers - 1):
        keep = rng.random((T, B, config.hidden), dtype=np.float32) >= p
        dt = np.dtype(dtype)
        out.append(keep.astype(dt) * dt.type(1.0 / (1.0 - p)))  # (T, B, H)
    return out


def forward(config, params, x, h0, c0, masks=None):
    """ids x (T, B); h0, c0 (L, B, H); masks: None or a list of L-1 (T, B, H) multipliers.

    Returns logits (T, B, V), hT (L, B, H), cT (L, B, H).
    """
    T, B = x.shape
    V = config.vocab_size
    if config.embed > 0:
        inp = params["embed.weight"][x]  # (T, B, E)
    else:
        inp = np.eye(V, dtype=h0.dtype)[x]  # (T, B, V) one-hot
    relu = config.nonlinearity == "relu"
    hT, cT = np.zeros_like(h0), np.zeros_like(c0)
    for k in range(config.layers):
        w = [params[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c = h0[k], c0[k]
        out = np.zeros((T, B, config.hidden), h0.dtype)  # (T, B, H)
        for t in range(T):
            h, c = cell_step(config.cell, inp[t], h, c, *w, relu=relu)
            out[t] = h
        hT[k], cT[k] = h, c
        if masks is not None and k < config.layers - 1:
            out = out * masks[k]
        inp = out
    logits = inp @ params["head.weight"].T + params["head.bias"]  # (T, B, V)
    return logits, hT, cT


def xent(logits, y):
    """Per-character cross-entropy in nats: logits (T, B, V), targets y (T, B) -> (T, B)."""
    m = logits.max(axis=-1, keepdims=True)
    logz = m[..., 0] + np.log(np.exp(logits - m).sum(axis=-1))
    picked = np.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    return logz - picked


def mean_loss(config, params, x, y, h0, c0, masks=None):
    """Mean cross-entropy over the window (what CharLM.train_step returns)."""
    logits, _, _ = forward(config, params, x, h0, c0, masks)
    return float(xent(logits, y).mean())
