"""Tests of the CUDA backend. They run where kernels can launch: under the CUDA simulator
(NUMBA_ENABLE_CUDASIM=1 set before Numba is imported; ``tests/test_cuda_backend.py`` starts
this directory in such a subprocess) or on a real GPU. Elsewhere the directory is skipped.

Launch sizes are lowered (GEMM tiles of 4, 1-D blocks of 4 threads, at most 2 blocks) so the
tiny shapes still make multi-block grids, ragged tile edges and grid-stride loops. The
simulator runs a Python thread per GPU thread and its block manager busy-polls them, so a short
GIL switch interval makes it several times faster.

The simulator's arrays are NumPy arrays underneath and accept more than numba-cuda's
DeviceNDArray; ``real_device_arrays`` makes them refuse what a real device array refuses:
``a[...]`` (DeviceNDArray indexes through dummyarray, which has no Ellipsis; ``a[:]`` works)
and NumPy attributes DeviceNDArray lacks (``a.fill``, ``a.sum``, ...).
"""

from __future__ import annotations

import os
import sys

import pytest


def _runnable() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:
        return False


if not _runnable():
    collect_ignore_glob = ["test_*.py"]
else:
    sys.setswitchinterval(5e-4)


def _no_ellipsis(key):
    if key is Ellipsis or (isinstance(key, tuple) and any(k is Ellipsis for k in key)):
        raise TypeError("a numba-cuda device array cannot be indexed with '...' (DeviceNDArray has no "
                        "Ellipsis support): write a[:] instead")


# The public attributes of numba-cuda 0.30's DeviceNDArray (class and instance).
DEVICE_ARRAY_ATTRS = frozenset(
    "T as_cuda_arg bind copy_to_device copy_to_host device_ctypes_pointer flags get_ipc_handle getitem "
    "is_c_contiguous is_f_contiguous nbytes ravel reshape setitem split squeeze transpose view "
    "shape strides dtype size ndim gpu_data stream alloc_size".split())


@pytest.fixture(autouse=True)
def real_device_arrays(monkeypatch):
    """Under the simulator, make device arrays as strict as numba-cuda's DeviceNDArray."""
    from charlm.backends.cuda import launch

    if not launch.SIMULATOR:
        yield
        return
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    get, put, attr = FakeCUDAArray.__getitem__, FakeCUDAArray.__setitem__, FakeCUDAArray.__getattr__

    def getitem(self, key):
        _no_ellipsis(key)
        return get(self, key)

    def setitem(self, key, value):
        _no_ellipsis(key)
        return put(self, key, value)

    def getattr_(self, name):
        if not name.startswith("_") and name not in DEVICE_ARRAY_ATTRS:
            raise AttributeError(f"a numba-cuda device array has no attribute {name!r}")
        return attr(self, name)

    monkeypatch.setattr(FakeCUDAArray, "__getattr__", getattr_)
    monkeypatch.setattr(FakeCUDAArray, "__getitem__", getitem)
    monkeypatch.setattr(FakeCUDAArray, "__setitem__", setitem)
    yield


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    from charlm.backends.cuda import launch

    monkeypatch.setattr(launch, "TILE", 4)
    monkeypatch.setattr(launch, "BLOCK", 4)
    monkeypatch.setattr(launch, "MAX_BLOCKS", 2)
    launch._scratch.clear()
    yield launch


@pytest.fixture(params=["cpu", "cuda"])
def be(request):
    """Each backend module in turn."""
    from charlm.backends import get

    return get(request.param)
