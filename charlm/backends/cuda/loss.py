"""Fused softmax cross-entropy over rows of logits, on the device (contract as on the CPU).

    xent(logits, targets, dlogits | None, scale) -> float
        loss  = sum_n ( logsumexp(logits[n]) - logits[n, targets[n]] )
        dlogits[n] = scale * (softmax(logits[n]) - onehot(targets[n]))   (when dlogits is given)

One thread per row (the row's max, exp-sum and gradient in registers; ``dlogits`` is a buffer of
its own, as on the CPU, though ``logits`` itself works: each entry is read before it is written).
Per-row losses go to a float64 buffer, then ``reduce.total`` sums them deterministically and one
float comes back to the host.
A NaN or inf logit gives a NaN loss; host targets outside [0, V) raise ValueError (device
targets give a NaN loss).
A warp per row would coalesce the reads better for large V; for character vocabularies
(V ~ 100) the row kernel is a small fraction of a training step.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import launch
from .launch import f32, ids_on_device, jit
from .reduce import SUM, total

_ZERO = f32(0.0)


@jit
def _xent_rows(
    logits,  # (N, V)
    targets,  # (N,) int32
    dlogits,  # (N, V) out when grad; may be logits itself
    grad,  # bool: write dlogits
    scale,  # scalar of the logits' dtype
    rowloss,  # (N,) float64 out
):
    N, V = logits.shape
    for i in range(cuda.grid(1), N, cuda.gridsize(1)):
        tgt = targets[i]
        if tgt < 0 or tgt >= V:
            rowloss[i] = math.nan
            continue
        m = logits[i, 0]
        bad = _ZERO  # 0, or NaN when the row holds a NaN or inf
        for j in range(V):
            z = logits[i, j]
            m = max(m, z)
            bad += z * _ZERO
        lt = logits[i, tgt]
        s = _ZERO
        if grad:
            for j in range(V):
                e = math.exp(logits[i, j] - m)
                dlogits[i, j] = e
                s += e
            c = scale / s
            for j in range(V):
                dlogits[i, j] *= c
            dlogits[i, tgt] -= scale
        else:
            for j in range(V):
                s += math.exp(logits[i, j] - m)
        rowloss[i] = float(m) - float(lt) + math.log(float(s)) + float(bad)


def xent(logits, targets, dlogits, scale):
    """Sum over rows of -log softmax(logits)[target]; writes scale * dLoss/dlogits when dlogits is given."""
    N, V = logits.shape
    tg = ids_on_device(targets, V, "target").reshape(N)
    rowloss = launch.scratch("xent.rowloss", N, np.float64)  # (N,)
    blocks, threads = launch.grid1d(N)
    grad = dlogits is not None
    _xent_rows[blocks, threads](logits, tg, dlogits if grad else logits, grad, logits.dtype.type(scale), rowloss)
    return total(rowloss, SUM)
