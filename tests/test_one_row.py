"""One-row products: blas.gemm sends M == 1 to GEMV. Checked against numpy for every operand layout,
and through the model: a batch of one row equals each row of a batch of identical rows (GEMM)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from charlm.backends.cpu.blas import gemm
from charlm.config import ModelConfig
from charlm.model import CharLM


@njit(error_model="numpy")
def _gemm(trans, mnk, alpha, a, b, beta, c):
    gemm(trans, mnk, alpha, a, b, beta, c)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("M", [1, 3])
def test_gemm_blocks_with_offsets_and_beta(dtype, tol, tb, M):
    rng = np.random.default_rng(M + 2 * tb)
    K, N = 7, 5
    A = rng.standard_normal((M, K + 2)).astype(dtype)
    B = rng.standard_normal((N, K + 3) if tb else (K, N + 3)).astype(dtype)
    C = rng.standard_normal((M, N + 4)).astype(dtype)
    want = C.copy()
    b = B[:, 2:2 + K].T if tb else B[:, 2:2 + N]
    want[:, 3:3 + N] = 0.5 * (A[:, 1:1 + K] @ b) + 2.0 * C[:, 3:3 + N]
    _gemm((False, tb), (M, N, K), 0.5, (A, 1, K + 2), (B, 2, B.shape[1]), 2.0, (C, 3, N + 4))
    np.testing.assert_allclose(C, want, rtol=0, atol=tol)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("T", [1, 6])
def test_one_row_equals_a_row_of_a_batch(cell, T):
    cfg = ModelConfig(vocab_size=9, cell=cell, layers=2, hidden=10, embed=4)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 9, (T, 1)).astype(np.int32)
    y = rng.integers(0, 9, (T, 1)).astype(np.int32)
    out = {}
    for B in (1, 3):
        m = CharLM(cfg, seed=2, dtype=np.float64)
        xb, yb = np.ascontiguousarray(np.repeat(x, B, 1)), np.ascontiguousarray(np.repeat(y, B, 1))
        loss, (h, c) = m.train_step(xb, yb, m.init_state(B))
        nats, _, _ = m.loss(xb, yb, m.init_state(B))
        out[B] = (loss, nats / B, m.grad_flat.copy(), h[:, :1].copy())
    np.testing.assert_allclose(out[1][0], out[3][0], rtol=1e-12)
    np.testing.assert_allclose(out[1][1], out[3][1], rtol=1e-12)
    np.testing.assert_allclose(out[1][2], out[3][2], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out[1][3], out[3][3], rtol=1e-12, atol=1e-14)
