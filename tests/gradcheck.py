"""Small shared helpers for gradient checks by centered finite differences.

    numeric_grad(f, array, idx_list, eps=1e-6) -> (len(idx_list),) float64
        f() is a zero-argument callable returning a scalar loss that reads
        ``array`` (perturbed in place, restored afterwards).
    sample_indices(shape, k, rng) -> list of index tuples (k distinct entries, or all when fewer)
    rel_err(a, b) -> float      norm-relative error ||a - b|| / max(||a||, ||b||, tiny)
    check_grad(f, array, grad, rng, k=8, eps=1e-6) -> float
        rel_err between ``grad`` at sampled entries and the numeric gradient there.
"""

from __future__ import annotations

import numpy as np


def numeric_grad(f, array, idx_list, eps=1e-6):
    """Centered finite differences of scalar ``f()`` w.r.t. ``array[idx]`` for each idx."""
    out = np.empty(len(idx_list), dtype=np.float64)
    for k, idx in enumerate(idx_list):
        old = array[idx]
        array[idx] = old + eps
        fp = float(f())
        array[idx] = old - eps
        fm = float(f())
        array[idx] = old
        out[k] = (fp - fm) / (2.0 * eps)
    return out


def sample_indices(shape, k, rng):
    """Up to ``k`` distinct index tuples into an array of ``shape`` (all when it has fewer)."""
    n = int(np.prod(shape))
    flat = np.arange(n) if n <= k else rng.choice(n, size=k, replace=False)
    return [tuple(int(i) for i in np.unravel_index(j, shape)) for j in flat]


def rel_err(a, b):
    """Norm-relative error between two arrays (0 when both are zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / denom)


def check_grad(f, array, grad, rng, k=8, eps=1e-6):
    """Relative error of analytic ``grad`` against numeric gradients at ``k`` sampled entries of ``array``."""
    idx = sample_indices(array.shape, k, rng)
    num = numeric_grad(f, array, idx, eps)
    ana = np.array([grad[i] for i in idx], dtype=np.float64)
    return rel_err(ana, num)
