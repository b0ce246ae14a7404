"""Dense layer y = x W^T + b (the output head), forward and backward, as BLAS GEMMs split over threads.

    linear_forward(out, x, w, b)                  out = x w^T + b
    linear_backward(dx | None, dw, db, dout, x, w) dx = dout w, dw = dout^T x, db = sum_n dout[n]
Outputs are overwritten, never accumulated. Pass dx=None when x is an input that needs no
gradient (e.g. a one-hot encoding).

Threads (see ``recurrent``): the forward and dx split the N rows; dw and db split the O output
rows (dw's block reads a column block of dout through its leading dimension), so no result
needs a reduction.

Products of one row (B = 1: `charlm eval --file`, score, inspect) run as BLAS GEMV, not GEMM (see ``blas``).
"""

from __future__ import annotations

from numba import prange

from .blas import gemm
from .jit import kernel
from .threads import governed, width


@kernel(parallel=True)
def _linear_forward(
    out,  # (N, O) out
    x,  # (N, I)
    w,  # (O, I)
    b,  # (O,)
    nt,  # parts (threads.width(), passed in: numba.get_num_threads() here would make the kernel uncacheable)
):
    N, O = out.shape
    I = x.shape[1]
    nc = min(nt, N)
    for c in prange(nc):
        n0 = c * N // nc
        n1 = (c + 1) * N // nc
        gemm((False, True), (n1 - n0, O, I), 1.0, (x, n0 * I, I), (w, 0, I), 0.0, (out, n0 * O, O))
        for n in range(n0, n1):
            row = out[n]  # (O,)
            for k in range(O):
                row[k] += b[k]


@kernel(parallel=True)
def _linear_backward(
    dx,  # (N, I) out (ignored when has_dx is False)
    dw,  # (O, I) out
    db,  # (O,) out
    dout,  # (N, O)
    x,  # (N, I)
    w,  # (O, I)
    has_dx,  # bool
    nt,  # threads
):
    N, O = dout.shape
    I = x.shape[1]
    nc = min(nt, O)
    for c in prange(nc):
        if has_dx:
            n0 = c * N // nc
            n1 = (c + 1) * N // nc
            gemm((False, False), (n1 - n0, I, O), 1.0, (dout, n0 * O, O), (w, 0, I), 0.0, (dx, n0 * I, I))
        o0 = c * O // nc
        o1 = (c + 1) * O // nc
        gemm((True, False), (o1 - o0, I, N), 1.0, (dout, o0, O), (x, 0, I), 0.0, (dw, o0 * I, I))
        dbc = db[o0:o1]  # (o1 - o0,)
        for k in range(o1 - o0):
            dbc[k] = 0
        for n in range(N):
            row = dout[n, o0:o1]  # (o1 - o0,)
            for k in range(o1 - o0):
                dbc[k] += row[k]


@governed(lambda out, x, *a: (out.shape, x.shape))
def linear_forward(out, x, w, b):
    """out (N, O) = x (N, I) @ w (O, I)^T + b (O,)."""
    _linear_forward(out, x, w, b, width())


@governed(lambda dx, dw, db, dout, x, *a: (dx is None, dout.shape, x.shape))
def linear_backward(dx, dw, db, dout, x, w):
    """Overwrite dw (O, I), db (O,) and, unless it is None, dx (N, I) from dout (N, O)."""
    has_dx = dx is not None
    _linear_backward(dx if has_dx else x, dw, db, dout, x, w, has_dx, width())
