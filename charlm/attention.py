"""Luong global attention (Luong, Pham & Manning 2015) over encoder outputs, masked by each source's length.

No input feeding: the attention sits on top of the decoder, so all T decoder steps attend at once and the
decoder's input projection stays one GEMM. For decoder states h_t (T, B, H) and encoder outputs e_s (S, B, D):

    q_t      = h_t                      (dot: needs H == D)
             = W_a^T h_t                (general: W_a (H, D), score = h_t^T W_a e_s)
    score_ts = q_t . e_s                for s < len_b, else -inf (padding is never attended)
    a_t      = softmax_s(score_t)
    c_t      = sum_s a_ts e_s           (the context)
    out_t    = tanh(W_c [c_t; h_t] + b_c)    W_c (H, D + H): the attentional state fed to the head

Every product runs batch-major as a batched GEMM over all decoder steps ((B, T, H) @ (H, D),
(B, T, D) @ (B, D, S), (B, T, S) @ (B, S, D)); NumPy's matmul dispatches them to BLAS.
Forward fills a Workspace that backward reads; backward overwrites (never accumulates) its outputs.
The arrays are host NumPy (float32, or float64 in gradient checks).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

KINDS = ("none", "dot", "general")


class Workspace(NamedTuple):
    q: np.ndarray        # (B, T, D) queries
    e: np.ndarray        # (B, S, D) encoder outputs, batch-major
    a: np.ndarray        # (B, T, S) attention weights (0 on padding)
    cat: np.ndarray      # (B, T, D + H) [context; decoder state]
    out: np.ndarray      # (T, B, H) tanh(W_c [c; h] + b_c), time-major for the head


def forward(h, enc, lengths, kind: str, w_a, w_c, b_c) -> Workspace:
    """h (T, B, H), enc (S, B, D), lengths (B,) int; w_a (H, D) or None (dot), w_c (H, D + H), b_c (H,)."""
    T, B, H = h.shape
    e = np.ascontiguousarray(enc.transpose(1, 0, 2))           # (B, S, D)
    S, D = e.shape[1], e.shape[2]
    cat = np.empty((B, T, D + H), h.dtype)                     # (B, T, D + H) [context; decoder state]
    cat[:, :, D:] = h.transpose(1, 0, 2)
    hb = cat[:, :, D:]                                         # (B, T, H)
    if kind == "general":                                      # one (B*T, H) @ (H, D) GEMM
        q = (cat[:, :, D:].reshape(B * T, H) @ w_a).reshape(B, T, D)
    else:
        q = np.ascontiguousarray(hb)                           # (B, T, D)
    scores = q @ e.transpose(0, 2, 1)                          # (B, T, S)
    pad = np.arange(S)[None, :] >= np.asarray(lengths)[:, None]   # (B, S) True on padding
    if pad.any():
        scores += np.where(pad, -np.inf, 0.0).astype(h.dtype)[:, None, :]
    scores -= scores.max(axis=2, keepdims=True)
    a = np.exp(scores, out=scores)
    a /= a.sum(axis=2, keepdims=True)                          # (B, T, S)
    np.matmul(a, e, out=cat[:, :, :D])                         # context (B, T, D)
    out = np.tanh(cat.reshape(B * T, D + H) @ w_c.T + b_c)     # (B*T, H)
    return Workspace(q, e, a, cat, np.ascontiguousarray(out.reshape(B, T, H).transpose(1, 0, 2)))


def backward(ws: Workspace, dout, kind: str, w_a, w_c, dh, denc, dw_a, dw_c, db_c) -> None:
    """dout (T, B, H) dLoss/d(out) -> overwrites dh (T, B, H), denc (S, B, D), dw_a (H, D) (general), dw_c, db_c."""
    B, T, S = ws.a.shape
    D = ws.e.shape[2]
    H = dout.shape[2]
    out = ws.out.transpose(1, 0, 2)                            # (B, T, H)
    dpre = (dout.transpose(1, 0, 2) * (1.0 - out * out)).reshape(B * T, H)   # (B*T, H)
    cat2 = ws.cat.reshape(B * T, D + H)
    dw_c[...] = dpre.T @ cat2                                  # (H, D + H)
    db_c[...] = dpre.sum(axis=0)
    dcat = (dpre @ w_c).reshape(B, T, D + H)                   # (B, T, D + H)
    dctx = dcat[:, :, :D]                                      # (B, T, D)
    de = ws.a.transpose(0, 2, 1) @ dctx                        # (B, S, D)
    da = dctx @ ws.e.transpose(0, 2, 1)                        # (B, T, S)
    ds = ws.a * (da - (da * ws.a).sum(axis=2, keepdims=True))  # (B, T, S) softmax backward (0 on padding)
    dq = ds @ ws.e                                             # (B, T, D)
    de += ds.transpose(0, 2, 1) @ ws.q                         # (B, S, D)
    dhb = dcat[:, :, D:]                                       # (B, T, H)
    if kind == "general":
        dq2 = dq.reshape(B * T, D)
        dw_a[...] = cat2[:, D:].T @ dq2                        # (H, D)
        dhb = dhb + (dq2 @ w_a.T).reshape(B, T, H)
    else:
        dhb = dhb + dq
    dh[...] = dhb.transpose(1, 0, 2)
    denc[...] = de.transpose(1, 0, 2)
