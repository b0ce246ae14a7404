"""Launch geometry, compilation options and cached scratch buffers for the CUDA kernels.

Launch sizes are module-level settings read at every call, so tests can lower them to force
multi-block grids on tiny shapes (the CUDA simulator runs one Python thread per GPU thread):
    TILE        GEMM tile edge: a block is TILE x TILE threads (16 -> 256 threads)
    BLOCK       threads per block of the 1-D kernels (elementwise, gates, reductions); a power of 2
    MAX_BLOCKS  grid cap of the 1-D kernels: they loop grid-stride beyond BLOCK * MAX_BLOCKS items
Kernels whose shared memory depends on a setting (GEMM tiles, reductions) are built by cached
factories keyed on it, so a changed setting takes effect at the next call.

Float constants inside kernels come from ``f32``: a float32 scalar, so float32 arithmetic
stays float32 while float64 arguments promote (as ``np.float32`` globals in the CPU kernels).
The simulator runs kernels as Python with NumPy scalars, where ``math.exp`` returns a Python
float that a float32 constant would round back to float32 (NEP 50); there ``f32`` returns a
Python float, which gives the same result dtypes as compiled code.

``jit`` is ``cuda.jit`` with the house options: ``cache=True`` in charlm's per-user kernel cache
(as for the CPU kernels: ``charlm.kernelcache``; ``CHARLM_NUMBA_CACHE=0`` switches it off),
no fastmath (it would make ``isfinite`` lie).
"""

from __future__ import annotations

import numpy as np
from numba import cuda
from numba.cuda import config as _cuda_config

from ... import kernelcache

try:
    from numba.cuda.core import caching as _caching
except ImportError:  # older numba-cuda: the CPU target's caching module
    from numba.core import caching as _caching

TILE = 16
BLOCK = 256
MAX_BLOCKS = 1024
CACHE = kernelcache.enable(_caching)
SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)

_scratch: dict = {}


def f32(value):
    """A kernel float constant: np.float32 when compiled, a Python float under the simulator."""
    return float(value) if SIMULATOR else np.float32(value)


def jit(fn):
    """Decorate a module-level CUDA kernel (dtype-generic: compiled per argument types)."""
    return cuda.jit(cache=CACHE)(fn)


def grid1d(n: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride kernel over n items."""
    return max(1, min(MAX_BLOCKS, -(-n // BLOCK))), BLOCK


def grid2d(rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) of a tiled kernel over a (rows, cols) output: x runs along cols."""
    return (-(-cols // TILE), -(-rows // TILE)), (TILE, TILE)


def scratch(key: str, shape, dtype):
    """A device buffer reused across calls (contents undefined), one per (key, shape, dtype)."""
    k = (key, tuple(shape) if isinstance(shape, tuple) else (shape,), np.dtype(dtype).str)
    buf = _scratch.get(k)
    if buf is None:
        if len(_scratch) > 64:  # odd shapes (evaluation tails) must not pile up
            _scratch.clear()
        buf = _scratch[k] = cuda.device_array(shape, dtype)
    return buf


def is_device(a) -> bool:
    """True for a device array (the simulator's stand-in has no ``__cuda_array_interface__``)."""
    return hasattr(a, "copy_to_host")


def ids_on_device(ids, V: int, what: str):
    """Device int32 ids. A host array is checked against [0, V) first (ValueError as on the CPU);
    a device array is trusted (the kernels then write NaN for an out-of-range id, never read out of bounds)."""
    if is_device(ids):
        return ids
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"{what} id outside the vocabulary: the ids do not match this model")
    return cuda.to_device(ids)
