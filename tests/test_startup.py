"""Start-up paths: what a process loads before its first kernel call, and that the shortcuts keep
every behaviour (no timing here; bench/bench_startup.py measures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

BLAS = r"""
import json, sys
import numpy as np
import charlm.backends.cpu as cpu
cpu.configure()
out = {"linalg_before": "scipy.linalg" in sys.modules, "blas_loaded": cpu.CYTHON_BLAS in sys.modules}
from threadpoolctl import threadpool_info
import os
out["scipy_blas_threads"] = [i["num_threads"] for i in threadpool_info()  # SciPy's own copy (scipy.libs/)
                             if i["user_api"] == "blas"
                             and os.path.basename(os.path.dirname(i["filepath"])).lower().startswith("scipy")]
from charlm.backends.cpu.linear import linear_forward
rng = np.random.default_rng(0)
x = rng.standard_normal((12, 5)).astype(np.float32)
w = rng.standard_normal((6, 5)).astype(np.float32)
z = np.empty((12, 6), np.float32)
linear_forward(z, x, w, np.zeros(6, np.float32))  # the head's GEMM: SciPy's BLAS through blas.gemm
out["gemm_error"] = float(np.abs(z - x @ w.T).max())
import scipy.linalg
import scipy.linalg.cython_blas as cb
out["linalg_after"] = bool(scipy.linalg.blas.sgemm(1.0, w, w.T).shape == (6, 6)) and cb is sys.modules[cpu.CYTHON_BLAS]
print(json.dumps(out))
"""


def _run(code: str, tmp_path) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cpu_backend_loads_scipys_blas_without_scipy_linalg(tmp_path):
    out = _run(BLAS, tmp_path)
    assert out["blas_loaded"] and not out["linalg_before"]
    assert out["scipy_blas_threads"] and set(out["scipy_blas_threads"]) == {1}  # the thread limit still reaches it
    assert out["gemm_error"] < 1e-4                                             # the kernels' GEMM works
    assert out["linalg_after"]                                                  # and scipy.linalg still imports
