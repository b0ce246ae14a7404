"""CPU optimizer updates and gradient utilities against numpy references and torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import rel_err
from reference import optim as ref
from torchoracle import oracle

from charlm.backends.cpu import adam_step, all_finite, clip_value_, grad_sumsq, rmsprop_step, scale_, sgd_step

TOL = {np.float32: 1e-5, np.float64: 1e-10}
DTYPES = [np.float32, np.float64]
STEPS = 5


def grads(dtype, P=37, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(P).astype(dtype), [rng.standard_normal(P).astype(dtype) for _ in range(STEPS)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_sumsq_scale_clip(dtype):
    g = np.random.default_rng(1).standard_normal(1001).astype(dtype)
    assert abs(grad_sumsq(g) - float((g.astype(np.float64) ** 2).sum())) < 1e-12 * g.size
    h = g.copy()
    scale_(h, 0.3)
    assert h.dtype == dtype
    np.testing.assert_allclose(h, g * dtype(0.3), rtol=TOL[dtype])
    h = g.copy()
    h[5] = np.nan
    clip_value_(h, 0.5)
    assert np.isnan(h[5])
    h[5] = g[5] = 0
    np.testing.assert_array_equal(h, np.clip(g, -0.5, 0.5))
    assert np.isnan(grad_sumsq(np.array([1.0, np.nan], dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite(dtype):
    g = np.random.default_rng(2).standard_normal(515).astype(dtype)
    assert all_finite(g)
    assert all_finite(np.zeros(0, dtype))
    for bad in (np.nan, np.inf, -np.inf):
        for i in (0, 17, 514):
            h = g.copy()
            h[i] = bad
            assert not all_finite(h), (bad, i)
    assert all_finite(np.array([np.finfo(dtype).max, -np.finfo(dtype).max], dtype))


def run_steps(kernel_step, ref_step, dtype, n_state, **hp):
    """Run STEPS kernel updates (state buffers start as NaN: step 1 must not read them) and the reference."""
    p0, gs = grads(dtype)
    p = p0.copy()
    state = [np.full_like(p, np.nan) for _ in range(n_state)]
    pr, st = p0.astype(np.float64), {}
    for step, g in enumerate(gs, start=1):
        kernel_step(p, g, *state, step=step, **hp)
        pr = ref_step(pr, g.astype(np.float64), st, **hp)
    return p, pr


CASES = {
    "adam": (lambda p, g, m, v, step, **hp: adam_step(p, g, m, v, step=step, decoupled=False, **hp),
             lambda p, g, st, **hp: ref.adam(p, g, st, decoupled=False, **hp), 2,
             dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1)),
    "adamw": (lambda p, g, m, v, step, **hp: adam_step(p, g, m, v, step=step, decoupled=True, **hp),
              lambda p, g, st, **hp: ref.adam(p, g, st, decoupled=True, **hp), 2,
              dict(lr=1e-2, beta1=0.8, beta2=0.999, eps=1e-6, weight_decay=0.05)),
    "sgd": (sgd_step, ref.sgd, 1, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd-plain": (sgd_step, ref.sgd, 1, dict(lr=0.1, momentum=0.0, weight_decay=0.0)),
    "rmsprop": (rmsprop_step, ref.rmsprop, 2, dict(lr=1e-2, alpha=0.9, eps=1e-8, momentum=0.5, weight_decay=0.1)),
    "rmsprop-plain": (rmsprop_step, ref.rmsprop, 2, dict(lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0,
                                                         weight_decay=0.0)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_optimizer_matches_reference(name, dtype):
    kstep, rstep, n_state, hp = CASES[name]
    p, pr = run_steps(kstep, rstep, dtype, n_state, **hp)
    assert p.dtype == dtype
    p0, _ = grads(dtype)
    assert rel_err(p, pr) < TOL[dtype]
    assert rel_err(p - p0, pr - p0) < 100 * TOL[dtype]  # the update itself, not just the parameters


def test_matches_torch_optim():
    torch = oracle()
    torch.set_num_threads(1)
    o = torch.optim
    cases = [
        (o.Adam, dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1),
         lambda p, g, s, k: adam_step(p, g, s[0], s[1], 1e-2, 0.9, 0.99, 1e-8, 0.1, False, k)),
        (o.AdamW, dict(lr=1e-2, betas=(0.8, 0.999), eps=1e-6, weight_decay=0.05),
         lambda p, g, s, k: adam_step(p, g, s[0], s[1], 1e-2, 0.8, 0.999, 1e-6, 0.05, True, k)),
        (o.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01),
         lambda p, g, s, k: sgd_step(p, g, s[0], 0.1, 0.9, 0.01, k)),
        (o.RMSprop, dict(lr=1e-2, alpha=0.9, eps=1e-8, momentum=0.5, weight_decay=0.1),
         lambda p, g, s, k: rmsprop_step(p, g, s[0], s[1], 1e-2, 0.9, 1e-8, 0.5, 0.1, k)),
    ]
    for cls, kw, ours in cases:
        p0, gs = grads(np.float32, seed=3)
        tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        opt = cls([tp], **kw)
        p, state = p0.copy(), [np.zeros_like(p0), np.zeros_like(p0)]
        for k, g in enumerate(gs, start=1):
            tp.grad = torch.from_numpy(g.copy())
            opt.step()
            ours(p, g, state, k)
        want = tp.detach().numpy()
        assert rel_err(p, want) < 1e-6, cls.__name__
        assert rel_err(p - p0, want - p0) < 1e-5, cls.__name__
