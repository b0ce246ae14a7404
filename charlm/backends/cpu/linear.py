"""Dense layer y = x W^T + b (the output head), forward and backward, as BLAS GEMMs.

    linear_forward(out, x, w, b)                  out = x w^T + b
    linear_backward(dx | None, dw, db, dout, x, w) dx = dout w, dw = dout^T x, db = sum_n dout[n]
Outputs are overwritten, never accumulated. Pass dx=None when x is an input that needs no
gradient (e.g. a one-hot encoding).
"""

from __future__ import annotations

import numpy as np

from .jit import kernel


@kernel
def linear_forward(
    out,  # (N, O) out
    x,  # (N, I)
    w,  # (O, I)
    b,  # (O,)
):
    N, O = out.shape
    np.dot(x, w.T, out)
    for n in range(N):
        row = out[n]  # (O,)
        for k in range(O):
            row[k] += b[k]


@kernel
def _linear_backward_w(
    dw,  # (O, I) out
    db,  # (O,) out
    dout,  # (N, O)
    x,  # (N, I)
):
    N, O = dout.shape
    np.dot(dout.T, x, dw)
    for k in range(O):
        db[k] = 0
    for n in range(N):
        row = dout[n]  # (O,)
        for k in range(O):
            db[k] += row[k]


@kernel
def _linear_backward_x(
    dx,  # (N, I) out
    dout,  # (N, O)
    w,  # (O, I)
):
    np.dot(dout, w, dx)


def linear_backward(dx, dw, db, dout, x, w):
    """Overwrite dw (O, I), db (O,) and, unless it is None, dx (N, I) from dout (N, O)."""
    if dx is not None:
        _linear_backward_x(dx, dout, w)
    _linear_backward_w(dw, db, dout, x)
