"""CPU backend: Numba-jitted kernels (see ``charlm.backends`` for the contract).

Submodules load on first use, so importing one kernel module does not compile
or import the others.
"""

from __future__ import annotations

import os

import numpy as np

# Numba's np.dot (and blas.gemm) call SciPy's own OpenBLAS, which is loaded lazily on the first
# kernel call; load it now so that the thread limit below reaches it.
import scipy.linalg.cython_blas  # noqa: F401

from .. import LazyCells, lazy_exports  # noqa: E402

name = "cpu"


def _single_threaded_blas() -> None:
    """The kernels split their work over Numba's threads and call BLAS inside each of them, so the
    BLAS they call must run on one thread (a threaded one oversubscribes the cores: evaluation
    ran 20x slower). Only SciPy's copy is limited when it has its own (pip wheels); numpy's
    BLAS keeps its threads. With one shared BLAS (e.g. conda), that one is limited."""
    from threadpoolctl import ThreadpoolController

    ctl = ThreadpoolController()
    paths = [lib["filepath"] for lib in ctl.info() if lib["user_api"] == "blas"]
    scipys = [p for p in paths if os.path.basename(os.path.dirname(p)).lower().startswith("scipy")]
    if scipys or paths:
        ctl.select(filepath=scipys or paths).limit(limits=1)


_single_threaded_blas()

# The recurrent loops fork and join Numba's threads once per time step: ~1 us with the omp
# threading layer, ~80 us with workqueue (measured); Numba's own default tries tbb first.
# Prefer omp unless the user chose a layer.
if not ({"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ)):
    import numba

    os.environ["NUMBA_THREADING_LAYER_PRIORITY"] = "omp tbb workqueue"  # survives Numba's config reloads
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

# Waiting threads spin briefly, then sleep (libgomp reads this when Numba loads it, at the first
# parallel call): its default spin of milliseconds starved descheduled threads beside a busy
# process. See ``threads`` for the measurements and for the per-site thread choice.
if not ({"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"} & set(os.environ)):
    from .threads import SPINCOUNT

    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT

cells = LazyCells(__name__)
__getattr__ = lazy_exports(__name__, globals())


def to_device(a):
    return np.ascontiguousarray(a)


def to_host(a):
    return np.asarray(a)


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def empty(shape, dtype=np.float32):
    return np.empty(shape, dtype=dtype)


def mul(out, a, b):
    """out = a * b elementwise."""
    np.multiply(a, b, out=out)
