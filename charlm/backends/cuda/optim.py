"""Fused optimizer updates and gradient utilities on flat 1-D device buffers, in place.

Same arithmetic, in the same order, as the CPU backend (``charlm.backends.cpu.optim``):
    adam_step     torch.optim.Adam (decoupled=False: g += wd * p) / AdamW (decoupled=True)
    sgd_step      torch.optim.SGD, dampening 0, no Nesterov
    rmsprop_step  torch.optim.RMSprop, not centered
One grid-stride kernel per update; scalars are cast to the buffers' dtype on the host.
grad_sumsq / all_finite are float64 reductions (``reduce.total``) returning a Python value.
"""

from __future__ import annotations

import math

from numba import cuda

from . import launch
from .launch import f32, jit
from .reduce import NONFINITE, SUMSQ, total

_ZERO = f32(0.0)
_ONE = f32(1.0)


def grad_sumsq(g) -> float:
    """Sum of squares of g (P,), accumulated in float64."""
    return total(g, SUMSQ)


def all_finite(g) -> bool:
    """True when no entry of g (P,) is NaN or inf."""
    return total(g, NONFINITE) == 0.0


@jit
def _scale(
    g,  # (P,) in/out
    s,  # scalar of g's dtype
):
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        g[i] *= s


def scale_(g, s):
    """g *= s in place."""
    blocks, threads = launch.grid1d(g.size)
    _scale[blocks, threads](g, g.dtype.type(s))


@jit
def _clip_value(
    g,  # (P,) in/out
    c,  # scalar of g's dtype, > 0
):
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        v = g[i]
        if v > c:
            g[i] = c
        elif v < -c:
            g[i] = -c


def clip_value_(g, c):
    """Clamp every entry of g to [-c, c] in place (NaN stays NaN)."""
    blocks, threads = launch.grid1d(g.size)
    _clip_value[blocks, threads](g, g.dtype.type(c))


@jit
def _adam(
    p,  # (P,) in/out
    g,  # (P,)
    m,  # (P,) in/out first moment
    v,  # (P,) in/out second moment
    hyper,  # scalars of p's dtype: beta1, beta2, eps, wd, decay (1 - lr * wd for AdamW, else 1),
    #         step_size = lr / (1 - beta1^step), bc2_sqrt = sqrt(1 - beta2^step)
    l2,  # True: Adam's L2 term g + wd * p
    first,  # step == 1: m and v start from zero
):
    beta1, beta2, eps, wd, decay, step_size, bc2_sqrt = hyper
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i]
        if l2:
            gi += wd * p[i]
        pi = p[i] * decay
        mi = _ZERO if first else m[i]
        vi = _ZERO if first else v[i]
        mi += (gi - mi) * (_ONE - beta1)
        vi = vi * beta2 + (_ONE - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = pi - step_size * mi / (math.sqrt(vi) / bc2_sqrt + eps)


def adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """One Adam (decoupled=False) or AdamW (decoupled=True) step; step counts from 1."""
    t = p.dtype.type
    decay = 1.0 - lr * weight_decay if decoupled else 1.0
    step_size = lr / (1.0 - beta1 ** step)
    bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
    blocks, threads = launch.grid1d(p.size)
    hyper = tuple(t(x) for x in (beta1, beta2, eps, weight_decay, decay, step_size, bc2_sqrt))
    _adam[blocks, threads](p, g, m, v, hyper, bool(weight_decay != 0 and not decoupled), step == 1)


@jit
def _sgd(
    p,  # (P,) in/out
    g,  # (P,)
    buf,  # (P,) in/out momentum buffer (unused when momentum == 0)
    lr, momentum, wd,  # scalars of p's dtype
    first,  # step == 1: buf = g
):
    use_buf = momentum != _ZERO
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i]
        if use_buf:
            gi = gi if first else buf[i] * momentum + gi
            buf[i] = gi
        p[i] -= lr * gi


def sgd_step(p, g, buf, lr, momentum, weight_decay, step):
    """One SGD step (momentum buffer initialised to the gradient at step 1)."""
    t = p.dtype.type
    blocks, threads = launch.grid1d(p.size)
    _sgd[blocks, threads](p, g, buf, t(lr), t(momentum), t(weight_decay), step == 1)


@jit
def _rmsprop(
    p,  # (P,) in/out
    g,  # (P,)
    sq,  # (P,) in/out running mean of g^2
    buf,  # (P,) in/out momentum buffer (unused when momentum == 0)
    lr, alpha, eps, momentum, wd,  # scalars of p's dtype
    first,  # step == 1: sq and buf start from zero
):
    use_buf = momentum != _ZERO
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
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
    blocks, threads = launch.grid1d(p.size)
    _rmsprop[blocks, threads](p, g, sq, buf, t(lr), t(alpha), t(eps), t(momentum), t(weight_decay), step == 1)
