"""Plain-numpy embedding, one-hot, linear layer and softmax cross-entropy (with gradients).

Written for clarity, not speed: the oracle for every backend's layer kernels.
"""

from __future__ import annotations

import numpy as np


def embed_forward(ids, weight):
    """ids (T, B) -> (T, B, E): row lookup."""
    return weight[ids]


def embed_backward(ids, dout, V):
    """dout (T, B, E) -> dweight (V, E): every id's rows of dout summed."""
    dweight = np.zeros((V, dout.shape[-1]), dout.dtype)
    np.add.at(dweight, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))
    return dweight


def onehot(ids, V, dtype=np.float32):
    """ids (T, B) -> (T, B, V) with a single 1 per row."""
    return np.eye(V, dtype=dtype)[ids]


def linear_forward(x, w, b):
    """x (N, I), w (O, I), b (O,) -> (N, O)."""
    return x @ w.T + b


def linear_backward(dout, x, w):
    """dout (N, O) -> dx (N, I), dw (O, I), db (O,)."""
    return dout @ w, dout.T @ x, dout.sum(axis=0)


def log_softmax(logits):
    """Row-wise log-softmax of (N, V), computed in float64 after subtracting the row max."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def xent(logits, targets):
    """Sum over rows of -log softmax(logits)[target] (float) and its gradient (N, V) in float64."""
    lp = log_softmax(logits)
    n = np.arange(len(targets))
    loss = -lp[n, targets].sum()
    grad = np.exp(lp)
    grad[n, targets] -= 1.0
    return float(loss), grad
