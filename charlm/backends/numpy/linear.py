"""Dense layer products in NumPy (see ``cpu/linear.py``)."""

from __future__ import annotations

import numpy as np


def linear_forward(out, x, w, b):
    """out (N, O) = x (N, I) @ w (O, I)^T + b (O,)."""
    np.matmul(x, w.T, out=out)
    out += b


def linear_backward(dx, dw, db, dout, x, w):
    """Overwrite dw (O, I), db (O,) and, unless it is None, dx (N, I) from dout (N, O)."""
    np.matmul(dout.T, x, out=dw)
    np.sum(dout, axis=0, out=db)
    if dx is not None:
        np.matmul(dout, w, out=dx)
