"""CPU backend: Numba-jitted kernels (see ``charlm.backends`` for the contract).

Submodules load on first use, so importing one kernel module does not compile
or import the others. Importing changes no process-wide setting; ``configure()`` sets the thread
settings the kernels are tuned for (single-threaded SciPy BLAS, the omp threading layer, a short
OpenMP spin) and is called by the CLI and the library's entry points before the first kernel runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

import numpy as np

from .. import LazyCells, lazy_exports
from .frozen import frozen  # noqa: F401  (a scope of unchanging weights: CharLM.frozen)

name = "cpu"
_configured = False
SPINCOUNT = "10000"  # GOMP_SPINCOUNT for the kernels' threads: see ``threads`` for the measurements


def configure() -> None:
    """Set the process-wide thread settings the CPU kernels are tuned for; call it once before the
    first kernel runs. Importing this package changes nothing: the CLI calls this for every command
    that computes, and so do the library's entry points (``charlm.train``, ``charlm.load`` and its
    sampling / evaluation, ``trainsetup.set_threads``). Idempotent; settings the user made win:

    - SciPy's BLAS (the one Numba's ``np.dot`` and ``blas.gemm`` call) runs on 1 thread
      (``_single_threaded_blas``); numpy's own BLAS keeps its threads.
    - Numba's threading layer: omp first (``NUMBA_THREADING_LAYER_PRIORITY``), unless
      ``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY`` is set. It takes effect only
      if no parallel kernel ran (and ``numba.set_num_threads`` was not called) before.
    - ``GOMP_SPINCOUNT`` = ``SPINCOUNT``, unless it or ``OMP_WAIT_POLICY`` is set; libgomp
      reads it when Numba loads it, at the first parallel call.
    """
    global _configured
    if _configured:
        return
    _configured = True
    _single_threaded_blas()
    # The recurrent loops fork and join Numba's threads once per time step: ~1 us with the omp
    # threading layer, ~80 us with workqueue (measured); Numba's own default tries tbb first.
    if not ({"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ)):
        os.environ["NUMBA_THREADING_LAYER_PRIORITY"] = "omp tbb workqueue"  # survives Numba's config reloads
        if "numba" in sys.modules:  # else Numba reads the variable when it is imported (0.25 s saved here)
            sys.modules["numba"].config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
    # Waiting threads spin briefly, then sleep: libgomp's default spin of milliseconds starved
    # descheduled threads beside a busy process. See ``threads`` for the measurements.
    if not ({"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"} & set(os.environ)):
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT


CYTHON_BLAS = "scipy.linalg.cython_blas"


def _load_cython_blas() -> None:
    """Numba's np.dot (and blas.gemm) call the BLAS that ``scipy.linalg.cython_blas`` exports, which
    Numba loads lazily at the first kernel call; ``_single_threaded_blas`` loads it first.

    Only that one extension module is loaded, not the ``scipy.linalg`` package around it: the
    package's import (its decompositions, array-API layer, ...) cost about 0.13 s of CPU, a tenth of
    a warm ``charlm train`` start (measured, Zen 5). Numba finds the module in ``sys.modules`` by
    name; ``import scipy.linalg`` still works afterwards. Any surprise falls back to the plain import.
    """
    if CYTHON_BLAS in sys.modules:
        return
    try:
        import scipy

        folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
        path = next(p for p in (os.path.join(folder, "cython_blas" + s) for s in importlib.machinery.EXTENSION_SUFFIXES)
                    if os.path.isfile(p))
        spec = importlib.util.spec_from_file_location(CYTHON_BLAS, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[CYTHON_BLAS] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[CYTHON_BLAS]
            raise
    except Exception:
        import scipy.linalg.cython_blas  # noqa: F401


def _single_threaded_blas() -> None:
    """The kernels split their work over Numba's threads and call BLAS inside each of them, so the
    BLAS they call must run on one thread (a threaded one oversubscribes the cores: evaluation
    ran 20x slower). Only SciPy's copy is limited when it has its own (pip wheels); numpy's
    BLAS keeps its threads. With one shared BLAS (e.g. conda), that one is limited."""
    _load_cython_blas()  # loaded lazily by Numba otherwise: load it now so that the limit reaches it
    from threadpoolctl import ThreadpoolController

    ctl = ThreadpoolController()
    paths = [lib["filepath"] for lib in ctl.info() if lib["user_api"] == "blas"]
    scipys = [p for p in paths if os.path.basename(os.path.dirname(p)).lower().startswith("scipy")]
    if scipys or paths:
        ctl.select(filepath=scipys or paths).limit(limits=1)


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
