"""Sequence plumbing: the CPU backend's functions, which are NumPy already (``cpu/seq.py``)."""

from __future__ import annotations

from ..cpu.seq import (  # noqa: F401
    activation,
    activation_backward,
    add,
    concat_last,
    pool_last,
    pool_last_backward,
    pool_mean,
    pool_mean_backward,
    put_rows,
    reverse_seq,
    split_last,
    take_rows,
)
