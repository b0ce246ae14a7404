"""Fused optimizer updates and gradient utilities on flat 1-D buffers, in place.

Each function is one loop over the parameters (float32 or float64; scalars are cast to the
buffers' dtype). The updates follow PyTorch's single-tensor implementations exactly:
    adam_step     torch.optim.Adam (decoupled=False: g += wd * p) and torch.optim.AdamW
                  (decoupled=True: p *= 1 - lr * wd), bias-corrected, step counted from 1
    sgd_step      torch.optim.SGD, dampening 0, no Nesterov: the momentum buffer is g at step 1
    rmsprop_step  torch.optim.RMSprop, not centered
At step 1 no state buffer is read (adam zero-fills m and v first), so they need no zeroing.
Gradient utilities: grad_sumsq (float64 sum of squares), scale_, clip_value_, all_finite.
These passes are memory-bound and well under 1% of a training step, so they stay on one thread
(a parallel kernel would add ~0.5 s of first-ever compile each). Each loop runs over a whole
buffer with an index starting at 0 and no branches, so LLVM vectorizes it.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import kernel

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@kernel(fastmath={"reassoc", "contract"})  # reassoc lets the float64 reduction vectorize
def _sumsq(
    g,  # (P,)
):
    s = 0.0
    for i in range(g.size):
        v = np.float64(g[i])  # float() keeps float32 in Numba
        s += v * v
    return s


def grad_sumsq(g) -> float:
    """Sum of squares of g (P,), accumulated in float64."""
    return float(_sumsq(g))


@kernel
def _scale(
    g,  # (P,) in/out
    s,  # scalar of g's dtype
):
    for i in range(g.size):
        g[i] *= s


def scale_(g, s):
    """g *= s in place."""
    _scale(g, g.dtype.type(s))


@kernel
def _clip_value(
    g,  # (P,) in/out
    c,  # scalar of g's dtype, > 0
):
    for i in range(g.size):
        v = g[i]
        if v > c:
            g[i] = c
        elif v < -c:
            g[i] = -c


def clip_value_(g, c):
    """Clamp every entry of g to [-c, c] in place (NaN stays NaN)."""
    _clip_value(g, g.dtype.type(c))


@kernel(fastmath={"reassoc"})  # still IEEE for NaN/inf: only the order of the additions may change
def all_finite(
    g,  # (P,)
):
    bad = _ZERO  # stays 0 unless some entry is NaN or inf (then NaN)
    for i in range(g.size):
        bad += g[i] * _ZERO
    return bad == _ZERO


@kernel
def _adam(
    p,  # (P,) in/out
    g,  # (P,)
    m,  # (P,) in/out first moment
    v,  # (P,) in/out second moment
    beta1, beta2, eps, l2, decay,  # scalars of p's dtype; l2 = wd (Adam) or 0; decay = 1 - lr * wd (AdamW) or 1
    step_size, bc2_sqrt,  # lr / (1 - beta1^step), sqrt(1 - beta2^step)
):
    for i in range(p.size):  # branch-free (step 1 zero-fills m, v beforehand), so LLVM vectorizes it
        pi = p[i]
        gi = g[i] + l2 * pi
        mi = m[i]
        vi = v[i]
        mi += (gi - mi) * (_ONE - beta1)
        vi = vi * beta2 + (_ONE - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = pi * decay - step_size * mi / (math.sqrt(vi) / bc2_sqrt + eps)


def adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """One Adam (decoupled=False) or AdamW (decoupled=True) step; step counts from 1."""
    t = p.dtype.type
    if step == 1:  # the moments start from zero (whatever the buffers held)
        m.fill(0)
        v.fill(0)
    decay = 1.0 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    step_size = lr / (1.0 - beta1 ** step)
    bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
    _adam(p, g, m, v, t(beta1), t(beta2), t(eps), t(l2), t(decay), t(step_size), t(bc2_sqrt))


@kernel
def _sgd(
    p,  # (P,) in/out
    g,  # (P,)
    buf,  # (P,) in/out momentum buffer (unused when momentum == 0)
    lr, momentum, wd,  # scalars of p's dtype
    first,  # step == 1: buf = g
):
    use_buf = momentum != _ZERO
    for i in range(p.size):
        gi = g[i] + wd * p[i]
        if use_buf:
            gi = gi if first else buf[i] * momentum + gi
            buf[i] = gi
        p[i] -= lr * gi


def sgd_step(p, g, buf, lr, momentum, weight_decay, step):
    """One SGD step (momentum buffer initialised to the gradient at step 1)."""
    t = p.dtype.type
    _sgd(p, g, buf, t(lr), t(momentum), t(weight_decay), step == 1)


@kernel
def _rmsprop(
    p,  # (P,) in/out
    g,  # (P,)
    sq,  # (P,) in/out running mean of g^2
    buf,  # (P,) in/out momentum buffer (unused when momentum == 0)
    lr, alpha, eps, momentum, wd,  # scalars of p's dtype
    first,  # step == 1: sq and buf start from zero
):
    use_buf = momentum != _ZERO
    for i in range(p.size):
        gi = g[i] + wd * p[i]
        si = _ZERO if first else sq[i]
        si = si * alpha + (_ONE - alpha) * gi * gi
        sq[i] = si
        u = gi / (math.sqrt(si) + eps)
        if use_buf:
            u = u if first else buf[i] * momentum + u
            buf[i] = u
        p[i] -= lr * u


def rmsprop_step(p, g, sq, buf, lr, alpha, eps, momentum, weight_decay, step):
    """One RMSprop step (not centered); step counts from 1."""
    t = p.dtype.type
    _rmsprop(p, g, sq, buf, t(lr), t(alpha), t(eps), t(momentum), t(weight_decay), step == 1)
