"""CPU backend: Numba-jitted kernels (see ``charlm.backends`` for the contract).

Submodules load on first use, so importing one kernel module does not compile
or import the others.
"""

from __future__ import annotations

import importlib

import numpy as np

# Numba's np.dot calls SciPy's own OpenBLAS, which is loaded lazily on the first kernel call;
# load it now so threadpoolctl limits (the one owner of the cores) reach it too.
import scipy.linalg.cython_blas  # noqa: F401

name = "cpu"

_EXPORTS = {
    "embed_forward": "embed", "embed_backward": "embed", "onehot": "embed",
    "linear_forward": "linear", "linear_backward": "linear",
    "xent": "loss",
    "grad_sumsq": "optim", "scale_": "optim", "clip_value_": "optim", "all_finite": "optim",
    "adam_step": "optim", "sgd_step": "optim", "rmsprop_step": "optim",
}


class _Cells(dict):
    def __missing__(self, key):
        if key not in ("rnn", "lstm", "gru"):
            raise KeyError(key)
        mod = importlib.import_module(f"{__name__}.{key}")
        self[key] = mod
        return mod


cells = _Cells()


def __getattr__(attr):
    if attr in _EXPORTS:
        mod = importlib.import_module(f"{__name__}.{_EXPORTS[attr]}")
        value = getattr(mod, attr)
        globals()[attr] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


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
