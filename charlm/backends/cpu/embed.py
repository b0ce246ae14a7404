"""Embedding lookup (and its scatter-add gradient) and one-hot encoding of character ids.

    embed_forward(out, ids, weight)      out[t, b] = weight[ids[t, b]]
    embed_backward(dweight, ids, dout)   dweight = 0, then dweight[ids[t, b]] += dout[t, b]
    onehot(out, ids)                     out = 0, then out[t, b, ids[t, b]] = 1

An id outside [0, V) raises ValueError (a tokenizer/model vocabulary mismatch), never a
silent out-of-bounds read.
"""

from __future__ import annotations

from .jit import kernel


@kernel
def _check_ids(ids, V):  # ids (T, B)
    T, B = ids.shape
    for t in range(T):
        for b in range(B):
            if ids[t, b] < 0 or ids[t, b] >= V:
                raise ValueError("character id outside the vocabulary: the ids do not match this model")


@kernel
def embed_forward(
    out,  # (T, B, E) out
    ids,  # (T, B) int32
    weight,  # (V, E)
):
    T, B = ids.shape
    _check_ids(ids, weight.shape[0])
    E = weight.shape[1]
    for t in range(T):
        for b in range(B):
            row = weight[ids[t, b]]  # (E,)
            o = out[t, b]  # (E,)
            for k in range(E):
                o[k] = row[k]


@kernel
def embed_backward(
    dweight,  # (V, E) out (overwritten)
    ids,  # (T, B) int32
    dout,  # (T, B, E)
):
    T, B = ids.shape
    V, E = dweight.shape
    _check_ids(ids, V)
    for v in range(V):
        for k in range(E):
            dweight[v, k] = 0
    for t in range(T):
        for b in range(B):
            row = dweight[ids[t, b]]  # (E,)
            d = dout[t, b]  # (E,)
            for k in range(E):
                row[k] += d[k]


@kernel
def onehot(
    out,  # (T, B, V) out (overwritten)
    ids,  # (T, B) int32
):
    T, B, V = out.shape
    _check_ids(ids, V)
    for t in range(T):
        for b in range(B):
            o = out[t, b]  # (V,)
            for k in range(V):
                o[k] = 0
            o[ids[t, b]] = 1
