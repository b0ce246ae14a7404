"""The one place that decides how CPU kernels are compiled.

``kernel`` is ``numba.njit`` with the house options: ``cache=True`` (switch off
with ``CHARLM_NUMBA_CACHE=0``; ``NUMBA_CACHE_DIR`` is honoured by Numba itself),
``error_model='numpy'`` (no ZeroDivisionError branch per division, so loops
vectorize), ``nogil=True`` and no fastmath (fastmath makes ``isfinite`` lie).
"""

from __future__ import annotations

import os

import numba

CACHE = os.environ.get("CHARLM_NUMBA_CACHE", "1") != "0"


def kernel(fn=None, **options):
    """Decorate a CPU kernel: ``@kernel`` or ``@kernel(inline='always')``."""
    opts = {"cache": CACHE, "error_model": "numpy", "nogil": True}
    opts.update(options)
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)
