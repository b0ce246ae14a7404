"""Sequence plumbing for variable-length batches, pooling, concatenation and activations.

Lengths are (B,) int64; a batch's sequences are left-aligned in a (T, B, F) window, positions
t >= lengths[b] are padding. Outputs are overwritten, never accumulated.

    reverse_seq(out, x, lengths)              out[t, b] = x[L_b-1-t, b] for t < L_b; pads copied as is
                                              (an involution: it is its own backward)
    concat_last(out, a, b) / split_last(da, db, dout)    (.., Fa + Fb) <-> (.., Fa), (.., Fb)
    pool_last(out, x, lengths, nrev)          out[b, :F-nrev] = x[L_b-1, b, :F-nrev] (forward halves),
                                              out[b, F-nrev:] = x[0, b, F-nrev:] (reverse halves end at t=0)
    pool_last_backward(dx, dout, lengths, nrev)
    pool_mean(out, x, lengths)                out[b] = mean over t < L_b of x[t, b]
    pool_mean_backward(dx, dout, lengths)
    take_rows(out, x, idx) / put_rows(out, x, idx)    out = x[idx]; out = 0, out[idx] = x
    add(out, a, b)                            out = a + b
    activation(out, x, kind) / activation_backward(dx, dout, y, kind)   kind: relu | sigmoid | tanh
        (backward from the activated output y; dx may be dout itself)

These are memory-bound gathers and elementwise passes, a small part of a step next to the
recurrent GEMMs; NumPy runs them (no compilation).
"""

from __future__ import annotations

import numpy as np


def _rev_rows(T, B, lengths):
    """(T, B) int64: the time index each position reads when reversed within its own length."""
    t = np.arange(T)[:, None]
    L = np.asarray(lengths, np.int64)[None, :]
    return np.where(t < L, L - 1 - t, t)


def reverse_seq(out, x, lengths):
    T, B = x.shape[:2]
    src = _rev_rows(T, B, lengths)  # (T, B)
    out[...] = x[src, np.arange(B)[None, :]]


def concat_last(out, a, b):
    fa = a.shape[-1]
    out[..., :fa] = a
    out[..., fa:] = b


def split_last(da, db, dout):
    fa = da.shape[-1]
    da[...] = dout[..., :fa]
    db[...] = dout[..., fa:]


def pool_last(out, x, lengths, nrev):
    B, F = out.shape
    nf = F - nrev
    idx = np.asarray(lengths, np.int64) - 1
    out[:, :nf] = x[idx, np.arange(B), :nf]
    out[:, nf:] = x[0, :, nf:]


def pool_last_backward(dx, dout, lengths, nrev):
    B, F = dout.shape
    nf = F - nrev
    dx[...] = 0
    idx = np.asarray(lengths, np.int64) - 1
    dx[idx, np.arange(B), :nf] = dout[:, :nf]
    dx[0, :, nf:] += dout[:, nf:]


def pool_mean(out, x, lengths):
    T = x.shape[0]
    L = np.asarray(lengths, np.int64)
    m = (np.arange(T)[:, None] < L[None, :]).astype(x.dtype)  # (T, B)
    np.einsum("tb,tbf->bf", m, x, out=out)
    out /= L[:, None].astype(x.dtype)


def pool_mean_backward(dx, dout, lengths):
    T = dx.shape[0]
    L = np.asarray(lengths, np.int64)
    m = (np.arange(T)[:, None] < L[None, :]).astype(dx.dtype) / L[None, :].astype(dx.dtype)  # (T, B)
    np.multiply(m[:, :, None], dout[None, :, :], out=dx)


def take_rows(out, x, idx):
    np.take(x, idx, axis=0, out=out)


def put_rows(out, x, idx):
    out[...] = 0
    out[idx] = x


def activation(out, x, kind):
    if kind == "relu":
        np.maximum(x, 0, out=out)
    elif kind == "sigmoid":
        np.negative(x, out=out)
        np.exp(out, out=out)
        out += 1
        np.reciprocal(out, out=out)
    elif kind == "tanh":
        np.tanh(x, out=out)
    else:
        raise ValueError(f"unknown activation {kind!r}")


def activation_backward(dx, dout, y, kind):
    if kind == "relu":
        np.multiply(dout, y > 0, out=dx)
    elif kind == "sigmoid":
        np.multiply(dout, y * (1 - y), out=dx)
    elif kind == "tanh":
        np.multiply(dout, 1 - y * y, out=dx)
    else:
        raise ValueError(f"unknown activation {kind!r}")


def add(out, a, b):
    """out = a + b elementwise."""
    np.add(a, b, out=out)
