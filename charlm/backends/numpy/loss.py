"""Softmax cross-entropy in NumPy (see ``cpu/loss.py``)."""

from __future__ import annotations

import numpy as np


def xent(logits, targets, dlogits, scale):
    """Sum over rows of -log softmax(logits)[target]; writes scale * dLoss/dlogits when dlogits is given."""
    N, V = logits.shape
    t = np.asarray(targets).reshape(N)
    if N and (t.min() < 0 or t.max() >= V):
        raise ValueError("target id outside the vocabulary: the ids do not match this model")
    rows = np.arange(N)
    m = logits.max(axis=1, keepdims=True)  # (N, 1)
    e = dlogits if dlogits is not None else np.empty_like(logits)  # (N, V)
    np.subtract(logits, m, out=e)
    picked = e[rows, t].astype(np.float64)  # (N,) logit - max of each target
    np.exp(e, out=e)
    s = e.sum(axis=1, keepdims=True)  # (N, 1)
    total = float(np.sum(np.log(s[:, 0].astype(np.float64)) - picked))
    if dlogits is not None:
        e *= logits.dtype.type(scale) / s
        e[rows, t] -= logits.dtype.type(scale)
    return total
