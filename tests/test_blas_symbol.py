"""charlm/backends/cpu/blas.py calls Numba's INTERNAL helpers ``numba_xxgemm``/``numba_xxgemv`` by name (pyproject
pins numba below the next minor release for that reason): fail loudly if a Numba release drops
or renames it, before any kernel breaks in an obscure way."""

from __future__ import annotations

import numpy as np


def test_numba_still_exports_the_blas_helpers():
    import re
    from pathlib import Path

    from numba import _helperlib

    import charlm.backends.cpu.blas as blas

    used = set(re.findall(r'"numba_(xx\w+)"', Path(blas.__file__).read_text()))
    assert {"xxgemm"} <= used
    for name in sorted(used):
        assert name in _helperlib.c_helpers, f"numba no longer exports numba_{name}: blas.py must change"


def test_gemm_through_the_helper_computes_a_product():
    from numba import njit

    from charlm.backends.cpu.blas import gemm

    @njit
    def run(a, b, c):
        gemm((False, True), (2, 3, 4), 1.0, (a, 0, 4), (b, 0, 4), 0.0, (c, 0, 3))

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4)), rng.standard_normal((3, 4))
    c = np.zeros((2, 3))
    run(a, b, c)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-12)
