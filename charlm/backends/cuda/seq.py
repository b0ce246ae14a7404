"""Sequence plumbing on the CUDA backend: the CPU backend's ``seq`` functions (same names and
semantics, see ``charlm/backends/cpu/seq.py``), run on host copies of their arguments.

These are gathers and elementwise passes that the classifier and tagger layers call a few
times per batch (reverse within each length, pooling, concatenation, activations). Each call
copies its arrays to the host and the result back: correct on every device, not fast. Device
kernels for them are future work; the char LM never calls them (its stack is forward-only,
full-length, and its head is the device ``xent``).
"""

from __future__ import annotations

import numpy as np

from ..cpu import seq as _cpu
from .launch import is_device


def _host(a):
    return a.copy_to_host() if is_device(a) else a


def _hosted(name):
    fn = getattr(_cpu, name)

    def op(out, *args):
        h = np.ascontiguousarray(_host(out)).copy()
        fn(h, *[_host(a) if hasattr(a, "shape") else a for a in args])
        if is_device(out):
            out.copy_to_device(h)
        else:
            out[...] = h

    op.__name__ = name
    op.__doc__ = f"``{name}`` of the CPU backend, on host copies (see the module docstring)."
    return op


reverse_seq = _hosted("reverse_seq")
concat_last = _hosted("concat_last")
pool_last = _hosted("pool_last")
pool_last_backward = _hosted("pool_last_backward")
pool_mean = _hosted("pool_mean")
pool_mean_backward = _hosted("pool_mean_backward")
take_rows = _hosted("take_rows")
put_rows = _hosted("put_rows")
activation = _hosted("activation")
activation_backward = _hosted("activation_backward")
add = _hosted("add")


def split_last(da, db, dout):
    """``split_last`` of the CPU backend (two outputs), on host copies."""
    ha, hb = np.ascontiguousarray(_host(da)).copy(), np.ascontiguousarray(_host(db)).copy()
    _cpu.split_last(ha, hb, _host(dout))
    for dst, h in ((da, ha), (db, hb)):
        if is_device(dst):
            dst.copy_to_device(h)
        else:
            dst[...] = h
