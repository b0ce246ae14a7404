"""Deterministic float64 reductions of a device array to one Python float.

    total(x, mode) -> float     mode SUM: sum x;  SUMSQ: sum x^2;  NONFINITE: sum x*0 (0, or NaN
                                when some entry is NaN or inf)
Two passes, no atomics, so the result does not depend on scheduling: pass 1 runs a
grid-stride loop per thread and a shared-memory tree per block into ``part`` (blocks,);
pass 2 is one block over ``part``. Then one 8-byte copy to the host.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from . import launch

SUM, SUMSQ, NONFINITE = 0, 1, 2


@functools.cache
def _kernel(block: int, mode: int):
    def block_sums(
        x,  # (n,)
        out,  # (gridDim,) float64 out: one partial sum per block
    ):
        sm = cuda.shared.array(block, numba.float64)  # (block,)
        tid = cuda.threadIdx.x
        s = 0.0
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            v = float(x[i])
            if mode == SUMSQ:
                v = v * v
            elif mode == NONFINITE:
                v = v * 0.0
            s += v
        sm[tid] = s
        cuda.syncthreads()
        step = block // 2
        while step > 0:
            if tid < step:
                sm[tid] += sm[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            out[cuda.blockIdx.x] = sm[0]

    return cuda.jit(block_sums)


def total(x, mode: int = SUM) -> float:
    """Reduce the contiguous device array x (any shape) in float64; see the module docstring."""
    block = launch.BLOCK
    if block & (block - 1):
        raise ValueError(f"launch.BLOCK must be a power of 2, not {block}")
    if x.size == 0:
        return 0.0
    blocks, _ = launch.grid1d(x.size)
    part = launch.scratch("reduce.part", blocks, np.float64)  # (blocks,)
    res = launch.scratch("reduce.res", 1, np.float64)  # (1,)
    _kernel(block, mode)[blocks, block](x.reshape(x.size), part)
    _kernel(block, SUM)[1, block](part, res)
    return float(res.copy_to_host()[0])
