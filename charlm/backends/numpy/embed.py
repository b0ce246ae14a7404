"""Embedding lookup, its gradient, and one-hot inputs, in NumPy (see ``cpu/embed.py``)."""

from __future__ import annotations

import numpy as np


def _check_ids(ids, V):
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError("character id outside the vocabulary: the ids do not match this model")


def embed_forward(out, ids, weight):
    """out (T, B, E) = weight (V, E)[ids (T, B)]."""
    _check_ids(ids, weight.shape[0])
    np.take(weight, ids, axis=0, out=out)


def embed_backward(dweight, ids, dout):
    """Overwrite dweight (V, E) with the per-id sums of dout (T, B, E)."""
    V, E = dweight.shape
    _check_ids(ids, V)
    dweight[...] = 0
    np.add.at(dweight, ids.reshape(-1), dout.reshape(-1, E))


def onehot(out, ids):
    """out (T, B, V) = one_hot(ids (T, B))."""
    T, B, V = out.shape
    _check_ids(ids, V)
    out[...] = 0
    np.put_along_axis(out, ids.reshape(T, B, 1).astype(np.intp), 1, axis=2)
