"""Optimizer updates and gradient utilities on flat buffers, in NumPy (see ``cpu/optim.py``:
the same formulas, PyTorch's single-tensor implementations, scalars cast to the buffers' dtype)."""

from __future__ import annotations

import math

import numpy as np


def grad_sumsq(g) -> float:
    """Sum of squares of g (P,), accumulated in float64."""
    g64 = g.astype(np.float64)
    return float(np.dot(g64, g64))


def scale_(g, s):
    g *= g.dtype.type(s)


def clip_value_(g, c):
    np.clip(g, -g.dtype.type(c), g.dtype.type(c), out=g)  # NaN stays NaN


def all_finite(g) -> bool:
    return bool(np.isfinite(g).all())


def adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """One Adam (decoupled=False) or AdamW (decoupled=True) step; step counts from 1."""
    t = p.dtype.type
    if step == 1:
        m.fill(0)
        v.fill(0)
    gi = g + t(weight_decay) * p if (weight_decay and not decoupled) else g
    m += (gi - m) * t(1.0 - beta1)
    v *= t(beta2)
    v += t(1.0 - beta2) * gi * gi
    if decoupled and weight_decay:
        p *= t(1.0 - lr * weight_decay)
    step_size = t(lr / (1.0 - beta1 ** step))
    bc2_sqrt = t(math.sqrt(1.0 - beta2 ** step))
    p -= step_size * m / (np.sqrt(v) / bc2_sqrt + t(eps))


def sgd_step(p, g, buf, lr, momentum, weight_decay, step):
    """One SGD step (momentum buffer initialised to the gradient at step 1)."""
    t = p.dtype.type
    gi = g + t(weight_decay) * p
    if momentum:
        if step == 1:
            buf[...] = gi
        else:
            buf *= t(momentum)
            buf += gi
        gi = buf
    p -= t(lr) * gi


def rmsprop_step(p, g, sq, buf, lr, alpha, eps, momentum, weight_decay, step):
    """One RMSprop step (not centered); step counts from 1."""
    t = p.dtype.type
    gi = g + t(weight_decay) * p
    if step == 1:
        sq.fill(0)
    sq *= t(alpha)
    sq += t(1.0 - alpha) * gi * gi
    u = gi / (np.sqrt(sq) + t(eps))
    if momentum:
        if step == 1:
            buf[...] = u
        else:
            buf *= t(momentum)
            buf += u
        u = buf
    p -= t(lr) * u
