"""The one place that decides how CPU kernels are compiled.

``kernel`` is ``numba.njit`` with the house options: ``cache=True`` in charlm's per-user
kernel cache (never inside the installed package; see ``charlm.kernelcache`` for where,
``NUMBA_CACHE_DIR`` honoured, ``CHARLM_NUMBA_CACHE=0`` switches it off),
``error_model='numpy'`` (no ZeroDivisionError branch per division, so loops
vectorize), ``nogil=True`` and no fastmath (fastmath makes ``isfinite`` lie).
"""

from __future__ import annotations

import numba
from numba.core import caching

from ... import kernelcache

CACHE = kernelcache.enable(caching)


def kernel(fn=None, **options):
    """Decorate a CPU kernel: ``@kernel`` or ``@kernel(inline='always')``."""
    opts = {"cache": CACHE, "error_model": "numpy", "nogil": True}
    opts.update(options)
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)
