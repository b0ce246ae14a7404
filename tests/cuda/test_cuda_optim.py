"""Optimizer steps and gradient utilities of each backend against the numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import rel_err
from reference import optim as ref

P = 37  # more than BLOCK * MAX_BLOCKS threads: every kernel loops grid-stride
STEPS = 3


def grads(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(P).astype(np.float32), [rng.standard_normal(P).astype(np.float32)
                                                       for _ in range(STEPS)]


CASES = {
    "adam": ("adam_step", ref.adam, 2, dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1,
                                            decoupled=False)),
    "adamw": ("adam_step", ref.adam, 2, dict(lr=1e-2, beta1=0.8, beta2=0.999, eps=1e-6, weight_decay=0.05,
                                             decoupled=True)),
    "sgd": ("sgd_step", ref.sgd, 1, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd-plain": ("sgd_step", ref.sgd, 1, dict(lr=0.1, momentum=0.0, weight_decay=0.0)),
    "rmsprop": ("rmsprop_step", ref.rmsprop, 2, dict(lr=1e-2, alpha=0.9, eps=1e-8, momentum=0.5,
                                                     weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_optimizer_matches_reference(be, name):
    fn, rstep, n_state, hp = CASES[name]
    p0, gs = grads()
    p = be.to_device(p0.copy())
    state = [be.to_device(np.full(P, np.nan, np.float32)) for _ in range(n_state)]  # step 1 must not read
    pr, st = p0.astype(np.float64), {}
    for step, g in enumerate(gs, start=1):
        getattr(be, fn)(p, be.to_device(g), *state, step=step, **hp)
        pr = rstep(pr, g.astype(np.float64), st, **hp)
    got = be.to_host(p)
    assert rel_err(got, pr) < 1e-5
    assert rel_err(got - p0, pr - p0) < 1e-3  # the update itself, not just the parameters


def test_gradient_utilities(be):
    g0 = np.random.default_rng(2).standard_normal(P).astype(np.float32)
    g = be.to_device(g0.copy())
    s = be.grad_sumsq(g)
    assert isinstance(s, float) and s == pytest.approx(float((g0.astype(np.float64) ** 2).sum()), rel=1e-12)
    be.scale_(g, 0.5)
    np.testing.assert_array_equal(be.to_host(g), g0 * np.float32(0.5))
    be.clip_value_(g, 0.3)
    np.testing.assert_array_equal(be.to_host(g), np.clip(g0 * np.float32(0.5), -0.3, 0.3).astype(np.float32))
    assert be.all_finite(g)
    for bad in (np.nan, -np.inf):
        h = g0.copy()
        h[P - 1] = bad
        assert not be.all_finite(be.to_device(h))
