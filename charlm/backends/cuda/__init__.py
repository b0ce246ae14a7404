"""CUDA backend: numba-cuda kernels with the CPU backend's names (see ``charlm.backends``).

Arrays are numba device arrays (C-contiguous, float32 or float64; ids int32). Character ids
may also be passed as host arrays: they are range-checked and copied (a (T, B) int32 copy per
call). Scalar results (xent, grad_sumsq, all_finite) are device reductions followed by one
8-byte copy; nothing else leaves the device during a training step, and the recurrences run
as a few kernel launches per time step with no host round trip (design and the
persistent-kernel alternative: ``charlm.backends.cuda.lstm``).

Modules: ``gemm`` (tiled GEMM with transposes, column sums), ``rnn``/``lstm``/``gru`` (cells),
``embed``, ``linear``, ``loss``, ``optim``, ``seq`` (sequence plumbing of the classifier and tagger:
reverse within lengths, pooling, concatenation, row gathers, activations), ``reduce`` (deterministic
float64 reductions), ``elementwise`` (fill, copy, mul), ``launch`` (block sizes tests can lower,
scratch buffers).

Sampling runs on the CPU: checkpoints hold host safetensors, and ``charlm sample`` uses the
CPU backend's compiled generate loop whatever device trained the model (token-by-token
generation at batch 1 is launch-bound on a GPU and gains nothing).

Every launch needs a GPU (or ``NUMBA_ENABLE_CUDASIM=1``, set before Numba is imported, which
runs the kernels on the CPU for tests); without one the first allocation raises
``numba.cuda.cudadrv.error.CudaSupportError``. Use ``charlm.backends.resolve_device`` first.
"""

from __future__ import annotations

import numpy as np

from ...errors import CharlmError

try:
    from numba import cuda
except ImportError as e:  # pragma: no cover - depends on the environment
    raise CharlmError(f"the CUDA backend needs numba-cuda ({e}): "
                      "pip install 'charlm[cuda]', or use --device cpu") from e

from .. import LazyCells, lazy_exports  # noqa: E402
from . import elementwise as _ew
from .launch import is_device

name = "cuda"

cells = LazyCells(__name__)
__getattr__ = lazy_exports(__name__, globals())


def to_device(a):
    """A device copy of host array a (C-contiguous); a device array is returned as is."""
    if is_device(a):
        return a
    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """A host (numpy) copy of device array a; a host array is returned as is."""
    if is_device(a):
        return a.copy_to_host()
    return np.asarray(a)


def zeros(shape, dtype=np.float32):
    return _ew.zeros(shape, dtype)


def empty(shape, dtype=np.float32):
    return cuda.device_array(shape, dtype)


def mul(out, a, b):
    """out = a * b elementwise, for dropout."""
    _ew.mul(out, a, b)
