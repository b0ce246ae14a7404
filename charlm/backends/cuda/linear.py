"""Dense layer y = x W^T + b (the output head) on the device, as tiled GEMMs (``gemm``).

    linear_forward(out, x, w, b)                  out = x w^T + b      (bias fused in the GEMM)
    linear_backward(dx | None, dw, db, dout, x, w) dx = dout w, dw = dout^T x, db = sum_n dout[n]
Outputs are overwritten, never accumulated; dx=None skips the input gradient.
"""

from __future__ import annotations

from .gemm import colsum, gemm


def linear_forward(
    out,  # (N, O) out
    x,  # (N, I)
    w,  # (O, I)
    b,  # (O,)
):
    gemm(out, x, w, tb=True, bias=b)


def linear_backward(
    dx,  # (N, I) out, or None
    dw,  # (O, I) out
    db,  # (O,) out
    dout,  # (N, O)
    x,  # (N, I)
    w,  # (O, I)
):
    if dx is not None:
        gemm(dx, dout, w)
    gemm(dw, dout, x, ta=True)
    colsum(db, dout)
