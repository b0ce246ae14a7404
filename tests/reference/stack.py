"""Plain-numpy layer stack, ONE sequence at a time (no padding, no batching): the oracle for
charlm.layers and charlm.heads. Parameters are a dict with PyTorch state-dict names.

    recurrent(cell, x (T, I), params, prefix, index, reverse, relu) -> (T, H)
    bidirectional(cell, x, params, prefix, index, relu) -> (T, 2H)   [forward, reverse]
    dense(x, w, b, act) -> act(x w^T + b)
    pool_last(y (T, F), nrev) -> (F,);  pool_mean(y) -> (F,)
    softmax_xent(logits (N, C), targets (N,)) -> sum of nats;  sigmoid_bce(z (N,), y (N,)) -> sum
"""

from __future__ import annotations

import numpy as np

from .model import cell_step, sigmoid


def recurrent(cell, x, params, prefix, index=0, reverse=False, relu=False):
    sfx = f"_l{index}" + ("_reverse" if reverse else "")
    w = [params[f"{prefix}.{n}{sfx}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    H = w[1].shape[1]
    T = x.shape[0]
    order = range(T - 1, -1, -1) if reverse else range(T)
    h = np.zeros((1, H))
    c = np.zeros((1, H))
    out = np.zeros((T, H))
    for t in order:
        h, c = cell_step(cell, x[t:t + 1], h, c, *w, relu=relu)
        out[t] = h[0]
    return out


def bidirectional(cell, x, params, prefix, index=0, relu=False):
    return np.concatenate([recurrent(cell, x, params, prefix, index, False, relu),
                           recurrent(cell, x, params, prefix, index, True, relu)], axis=1)


def dense(x, w, b, act="none"):
    z = x @ w.T + b
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "sigmoid":
        return sigmoid(z)
    if act == "tanh":
        return np.tanh(z)
    return z


def pool_last(y, nrev=0):
    F = y.shape[1]
    return np.concatenate([y[-1, :F - nrev], y[0, F - nrev:]])


def pool_mean(y):
    return y.mean(axis=0)


def softmax_xent(logits, targets):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(targets)), targets].sum())


def sigmoid_bce(z, y):
    p = sigmoid(z)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())
