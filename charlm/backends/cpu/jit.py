"""The one place that decides how CPU kernels are compiled.

``kernel`` is ``numba.njit`` with the house options: ``cache=True`` in charlm's per-user
kernel cache (never inside the installed package; see ``charlm.kernelcache`` for where,
``NUMBA_CACHE_DIR`` honoured, ``CHARLM_NUMBA_CACHE=0`` switches it off),
``error_model='numpy'`` (no ZeroDivisionError branch per division, so loops
vectorize), ``nogil=True`` and no fastmath (fastmath makes ``isfinite`` lie).
"""

from __future__ import annotations

import numba
from numba import types
from numba.core import caching

from ... import kernelcache

CACHE = kernelcache.enable(caching)


def plain(ty):
    """``ty`` without literal values: Literal[int](0) -> int64, Literal[bool](True) -> boolean, inside
    tuples too."""
    if isinstance(ty, types.BaseTuple):
        return types.BaseTuple.from_types([plain(t) for t in ty])
    return types.unliteral(ty)


def _plain_calls(dispatcher):
    """Calls from other kernels type their constant arguments as literals (``pack(P, 0, B, 0, ...)``
    is typed with Literal[int](0)), and Numba compiles one specialisation per distinct literal: the
    same machine code, compiled again (``pack`` was compiled 4 times for one run, ``gemm_packed`` 5).
    Kernels never branch on a literal at compile time, so their callers pass plain types."""
    template = dispatcher.get_call_template

    def get_call_template(args, kws):
        return template(tuple(plain(a) for a in args), {k: plain(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher


def kernel(fn=None, **options):
    """Decorate a CPU kernel: ``@kernel`` or ``@kernel(inline='always')``."""
    opts = {"cache": CACHE, "error_model": "numpy", "nogil": True}
    opts.update(options)
    if fn is None:
        return lambda f: _plain_calls(numba.njit(**opts)(f))
    return _plain_calls(numba.njit(**opts)(fn))
