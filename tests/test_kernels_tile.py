"""The tile GEMM (charlm/backends/cpu/tile.py) against numpy: every edge (rows not a multiple of MR,
columns not a multiple of NR, K = 0, K across KC blocks), both op(A), beta 0 and 1, float32 and
float64, offsets and leading dimensions, nothing written outside C; the packed form too; and the
AVX2 and generic vector widths compiled in a subprocess for a CPU named by Numba's settings."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from charlm.backends.cpu import tile

SHAPES = list(itertools.product((1, 3, 4, 9), (1, 5, tile.NR, tile.NR + 6, 2 * tile.NR + 2), (0, 1, 7, tile.KC + 44)))


def embed(a, ld, off, fill):
    """A flat buffer holding matrix ``a`` at offset ``off`` with row stride ``ld``, ``fill`` elsewhere."""
    rows, cols = a.shape
    buf = np.full(off + (rows + 1) * ld + 5, fill, a.dtype)
    buf[off:off + rows * ld].reshape(rows, ld)[:, :cols] = a
    return buf


def check_gemm(dtype, packed, rng):
    bad = []
    for (M, N, K), ta, beta in itertools.product(SHAPES, (False, True), (0, 1)):
        A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
        B = rng.standard_normal((K, N)).astype(dtype)
        C = rng.standard_normal((M, N)).astype(dtype)
        lda, ldc = A.shape[1] + 3, N + 2
        Ab = embed(A, lda, 5, np.nan)
        Cb = embed(C, ldc, 4, 7.0)
        if packed == "k":
            if beta:
                continue
            P = np.full(3 + tile.panels(tile.KW, N) + 4, np.nan, dtype)
            tile.gemm_kpacked(ta, (M, N, K), (Ab, 5, lda), (embed(B, N + 5, 2, np.nan), 2, N + 5), (Cb, 4, ldc),
                              (P, 3))
        elif packed:
            P = np.full(3 + tile.panels(K, N) + 4, np.nan, dtype)
            tile.pack(P, 3, embed(B, N + 5, 2, np.nan), 2, N + 5, K, N, False)
            tile.gemm_packed(ta, (M, N, K), (Ab, 5, lda), (P, 3), beta, (Cb, 4, ldc))
        else:
            tile.gemm(ta, (M, N, K), (Ab, 5, lda), (embed(B, N + 5, 2, np.nan), 2, N + 5), beta, (Cb, 4, ldc))
        want = (A.T if ta else A) @ B + (C if beta else 0)
        got = Cb[4:4 + M * ldc].reshape(M, ldc)
        tol = (2e-5 if dtype == np.float32 else 1e-12) * max(1, K)
        outside = np.concatenate([Cb[:4], got[:, N:].ravel(), Cb[4 + M * ldc:]])
        if not np.allclose(got[:, :N], want, rtol=tol, atol=tol) or not np.all(outside == 7.0):
            bad.append((M, N, K, ta, beta))
    return bad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("packed", [False, True, "k"], ids=["strided", "packed", "kpacked"])
def test_gemm_matches_numpy_on_every_edge(dtype, packed):
    assert check_gemm(dtype, packed, np.random.default_rng(0)) == []


@pytest.mark.parametrize("ta", [False, True])
def test_kpacked_gives_the_same_bits_as_gemm(ta):
    # the weight gradients moved from gemm to gemm_kpacked: each element's sum keeps its order
    rng = np.random.default_rng(4)
    M, N, K = 9, 2 * tile.NR + 3, 3 * tile.KW + 5
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    C1, C2 = np.zeros((M, N), np.float32), np.zeros((M, N), np.float32)
    tile.gemm(ta, (M, N, K), (A, 0, A.shape[1]), (B, 0, N), 0, (C1, 0, N))
    tile.gemm_kpacked(ta, (M, N, K), (A, 0, A.shape[1]), (B, 0, N), (C2, 0, N),
                      (np.zeros(tile.panels(tile.KW, N), np.float32), 0))
    np.testing.assert_array_equal(C1, C2)


def test_pack_transposed_and_padding():
    rng = np.random.default_rng(1)
    K, N = 7, tile.NR + 3
    src = rng.standard_normal((N, K)).astype(np.float32)  # op(B) = src^T
    P = np.full(tile.panels(K, N), np.nan, np.float32)
    tile.pack(P, 0, src.ravel(), 0, K, K, N, True)
    panels = P.reshape(-1, K, tile.NR)
    want = np.zeros((panels.shape[0] * tile.NR, K), np.float32)
    want[:N] = src
    np.testing.assert_array_equal(np.concatenate(list(panels), axis=1), want.T)


SCRIPT = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
from test_kernels_tile import check_gemm
from charlm.backends.cpu import tile
bad = check_gemm(np.float32, True, np.random.default_rng(2)) + check_gemm(np.float64, False, np.random.default_rng(3))
print(tile.VW, bad)
"""

HASWELL = "+avx,+avx2,+fma,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+f16c,+bmi,+bmi2"


@pytest.mark.parametrize("cpu,features,width", [("haswell", HASWELL, 8), ("generic", None, 4)])
def test_narrower_vector_widths(tmp_path, cpu, features, width):
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_FEATURES", None)
    if features:
        env["NUMBA_CPU_FEATURES"] = features
    code = SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split(None, 1) == [str(width), "[]\n"]
