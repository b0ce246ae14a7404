"""NumPy backend: the CPU contract (``charlm.backends``) in plain NumPy, with nothing to compile.

It exists for the first-ever start. A cold Numba cache costs a training run ~15-20 s of
compilation on two cores before its first step; on this backend the first step runs at once, and
``charlm train`` switches to the compiled CPU backend as soon as helper processes have filled the
kernel cache (``charlm.warmup``, ``Trainer``). The arrays are the CPU backend's (NumPy, C order),
so the parameters, gradients, optimizer state and carried state need no copy at the switch.

Same design as the compiled kernels, one NumPy call per piece: the input projection of all T
steps is one GEMM, only ``h @ W_hh^T`` is per step, the weight gradients are window GEMMs, and
every buffer is allocated once per window shape (``alloc``), so a step is a fixed sequence of
``out=`` calls. NumPy's own BLAS runs the products; ``configure`` changes nothing.
"""

from __future__ import annotations

from .. import LazyCells, lazy_exports
from ..cpu import empty, mul, to_device, to_host, zeros  # noqa: F401  (host arrays, as on the CPU; no Numba)

name = "numpy"


def configure() -> None:
    """Nothing to set: NumPy's BLAS keeps its own threads (the caller may limit them)."""


cells = LazyCells(__name__)
__getattr__ = lazy_exports(__name__, globals())
