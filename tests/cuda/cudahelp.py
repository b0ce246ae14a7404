"""Helpers shared by the CUDA backend tests (host <-> device, NaN-filled outputs)."""

from __future__ import annotations

import numpy as np


def nan_like(be, a):
    """A NaN-filled backend buffer shaped like host array a (shows an output a kernel forgets)."""
    return be.to_device(np.full(a.shape, np.nan, a.dtype))


def dev(be, *arrays):
    """Backend copies of host arrays."""
    return tuple(be.to_device(a) for a in arrays)
