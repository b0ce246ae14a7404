"""Batch sampling: from GEMM_ROWS rows the sampling kernels multiply with BLAS (one GEMM per product
and step) instead of their loop; the ids still match the numpy reference sampler."""

from __future__ import annotations

import numpy as np
import pytest
from reference import sample as ref
from test_sample import CONFIGS, IDS, random_params, run_kernel

from charlm.backends.cpu import sample as K

B = K.GEMM_ROWS + 3


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, 0, 1.0), (0.9, 0, 1.0), (0.9, 4, 0.8)])
def test_gemm_rows_match_reference(config, temperature, top_k, top_p):
    params = random_params(config, seed=5, scale=0.7)
    got = run_kernel(config, params, [3, 1], 0, 20, temperature, top_k, top_p, seed=9, B=B, chunks=(7, 13))
    want = ref.sample(config, params, [3, 1], 0, 20, temperature, top_k, top_p, np.random.default_rng(9),
                      num_samples=B)
    np.testing.assert_array_equal(got, want)
    assert len({tuple(r) for r in got.tolist()}) > 1 or temperature == 0.0   # rows draw differently


def test_float32_gemm_rows_agree_with_the_loop_rows():
    """The same float32 state stepped as GEMM_ROWS rows (BLAS) and one row at a time (loop)."""
    config = CONFIGS[0]
    params = random_params(config, seed=6, scale=0.5)
    w = K.prepare(config.cell, params, config.layers, dtype=np.float32)
    rng = np.random.default_rng(0)
    h0 = rng.standard_normal((config.layers, B, config.hidden)).astype(np.float32)
    c0 = rng.standard_normal(h0.shape).astype(np.float32)
    ids = np.array([1, 2, 3, 4], np.int32)
    h, c = h0.copy(), c0.copy()
    K.consume(w, h, c, ids)                                     # B rows: GEMM path
    for b in range(B):                                          # 1 row: loop path
        hb, cb = np.ascontiguousarray(h0[:, b:b + 1]), np.ascontiguousarray(c0[:, b:b + 1])
        K.consume(w, hb, cb, ids)
        np.testing.assert_allclose(h[:, b:b + 1], hb, rtol=0, atol=1e-5)
        np.testing.assert_allclose(c[:, b:b + 1], cb, rtol=0, atol=1e-5)
