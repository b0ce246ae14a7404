"""Plain-numpy Luong global attention, one decoder step of one row at a time (written for clarity).

The oracle for charlm.attention's batched forward. Gradients come from finite differences of this.
"""

from __future__ import annotations

import numpy as np


def attend(h, enc, lengths, kind, w_a, w_c, b_c):
    """h (T, B, H), enc (S, B, D), lengths (B,) -> (out (T, B, H), weights (B, T, S))."""
    T, B, H = h.shape
    S = enc.shape[0]
    out = np.zeros((T, B, H))
    weights = np.zeros((B, T, S))
    for b in range(B):
        n = int(lengths[b])
        keys = enc[:n, b]                                  # (n, D) only the real steps
        for t in range(T):
            q = h[t, b] if kind == "dot" else w_a.T @ h[t, b]
            score = keys @ q                               # (n,)
            a = np.exp(score - score.max())
            a /= a.sum()
            context = a @ keys                             # (D,)
            out[t, b] = np.tanh(w_c @ np.concatenate([context, h[t, b]]) + b_c)
            weights[b, t, :n] = a
    return out, weights
