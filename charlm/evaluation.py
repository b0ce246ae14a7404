"""The evaluation loops: mean nats per character of a model over a split of ids, with the hidden
state carried through each stream (``evaluate_ids``: the whole split; ``evaluate_pieces``: a fixed,
evenly spread subset). The trainer's evaluations and ``charlm eval --split`` both use them, so the
two report the same number for the same model."""

from __future__ import annotations

import contextlib

import numpy as np

from . import distributed


def _frozen(model):
    """The model's scope of unchanging weights (``CharLM.frozen``: the cells pack them once for
    all the windows), or none for a model that has no such scope."""
    scope = getattr(model, "frozen", None)
    return scope() if scope is not None else contextlib.nullcontext()


def evaluate_pieces(model, ids: np.ndarray, n: int, batch_size: int, seq_len: int, *, world=None) -> float:
    """Mean nats/char over a fixed subset of about ``n`` predictions: B pieces of equal length spread
    evenly over ``ids`` (each scored as one stream from a zero state), so the estimate covers the
    whole split at a fraction of its cost. Under MPI each rank scores its share of the pieces."""
    world = world or distributed.Solo()
    B = max(1, min(batch_size, n // max(1, seq_len)))
    length = max(1, n // B)
    starts = np.linspace(0, len(ids) - 1 - length, B).astype(np.int64)
    lo, hi = (0, B) if B % world.size else distributed.shard(B, world)
    if B % world.size and not world.is_root:
        lo = hi = 0                     # too few pieces to split evenly: rank 0 scores them all
    starts = starts[lo:hi]
    total, count = 0.0, 0
    if len(starts) == 0:
        total, count = world.allreduce(np.array([total, count], dtype=np.float64))
        return total / count
    x_all = np.stack([np.asarray(ids[s:s + length], dtype=np.int32) for s in starts], axis=1)  # (L, B)
    y_all = np.stack([np.asarray(ids[s + 1:s + 1 + length], dtype=np.int32) for s in starts], axis=1)
    state = model.init_state(len(starts))
    with _frozen(model):
        for t in range(0, length, seq_len):
            s, c, state = model.loss(np.ascontiguousarray(x_all[t:t + seq_len]),
                                     np.ascontiguousarray(y_all[t:t + seq_len]), state)
            total += s
            count += c
    if world.size > 1:
        total, count = world.allreduce(np.array([total, count], dtype=np.float64))
    return total / count


def evaluate_ids(model, ids: np.ndarray, batch_size: int, seq_len: int, *, world=None) -> float:
    """Mean nats/char predicting ids[1:] from their prefixes, with B contiguous streams.

    The split is cut into B streams of equal length (state carried through each, from
    zero); the few characters that do not fill a stream are scored as one more stream.
    Under MPI (``world`` with several ranks) each rank scores its share of the B streams
    (rank 0 also the remainder) and the sums are all-reduced: the same number on every rank.
    """
    world = world or distributed.Solo()
    n = len(ids) - 1
    if n <= 0:
        return float("nan")
    B = max(1, min(batch_size, n // max(1, seq_len)))
    per = n // B
    total, count = 0.0, 0
    lo, hi = (0, B) if B % world.size else distributed.shard(B, world)
    if B % world.size and not world.is_root:
        lo = hi = 0                     # too few streams to split evenly: rank 0 scores them all
    segments = [(hi - lo, per, lo * per)] if hi > lo else []
    if n - B * per > 0 and world.is_root:
        segments.append((1, n - B * per, B * per))
    with _frozen(model):
        for b, length, start in segments:
            x_all = np.asarray(ids[start:start + b * length], dtype=np.int32).reshape(b, length).T
            y_all = np.asarray(ids[start + 1:start + 1 + b * length], dtype=np.int32).reshape(b, length).T
            state = model.init_state(b)
            for t in range(0, length, seq_len):
                x = np.ascontiguousarray(x_all[t:t + seq_len])
                y = np.ascontiguousarray(y_all[t:t + seq_len])
                s, c, state = model.loss(x, y, state)
                total += s
                count += c
    if world.size > 1:
        total, count = world.allreduce(np.array([total, count], dtype=np.float64))
    return total / count
