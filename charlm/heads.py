"""Heads: the loss at the top of a layer stack, and its gradient.

    StepSoftmax    per-step softmax cross-entropy over (T, B, V) logits and (T, B) targets: the
                   LM (next character) and the tagger (a tag per character). Pads (batch.lengths)
                   are left out of the loss and get zero gradient.
    SeqSoftmax     many-to-one softmax over (B, C) logits and (B,) class targets.
    SigmoidBinary  many-to-one binary head over (B, 1) logits and (B,) 0/1 targets (Keras's
                   Dense(1, sigmoid) + binary cross-entropy), computed stably from the logit:
                   loss = max(z, 0) - z y + log(1 + exp(-|z|)), dz = sigmoid(z) - y.

Every head: loss(backend, logits, targets, batch, grad) -> (sum of nats, count, dlogits | None);
dlogits is d(mean loss)/d(logits) = d(sum / count), in the head's own buffer (logits are never
overwritten). probs(logits_host) -> host probabilities.
"""

from __future__ import annotations

import numpy as np

from .layers.base import Batch


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class _Buffers:
    def __init__(self):
        self._bufs: dict = {}

    def get(self, be, key, shape, dtype):
        buf = self._bufs.get(key)
        if buf is None:
            if len(self._bufs) >= 8:
                self._bufs.pop(next(iter(self._bufs)))
            buf = self._bufs[key] = be.zeros(shape, dtype)
        return buf


class StepSoftmax:
    """Per-step softmax cross-entropy; with variable lengths only real positions count."""

    def __init__(self):
        self._b = _Buffers()

    def loss(self, be, logits, targets, batch: Batch, grad: bool = True):
        T, B, V = logits.shape
        N = T * B
        flat = logits.reshape(N, V)
        dl = self._b.get(be, ("d", N, V), (N, V), logits.dtype) if grad else None
        if batch.full:  # device targets stay on the device (the LM's training loop)
            y = (targets.reshape(N) if getattr(targets, "dtype", None) == np.int32
                 else np.ascontiguousarray(targets, dtype=np.int32).reshape(N))
            s = be.xent(flat, y, dl, 1.0 / N)
            return float(s), N, None if dl is None else dl.reshape(T, B, V)
        y = np.ascontiguousarray(be.to_host(targets), dtype=np.int32).reshape(N)
        rows = batch.valid_rows()  # (M,)
        M = rows.size
        lv = self._b.get(be, ("v", M, V), (M, V), logits.dtype)
        be.take_rows(lv, flat, batch.on(be, "rows", rows))
        dlv = self._b.get(be, ("dv", M, V), (M, V), logits.dtype) if grad else None
        s = be.xent(lv, y[rows], dlv, 1.0 / M)
        if grad:
            be.put_rows(dl, dlv, batch.on(be, "rows", rows))
        return float(s), M, None if dl is None else dl.reshape(T, B, V)

    @staticmethod
    def probs(logits: np.ndarray) -> np.ndarray:
        return softmax(logits)


class SeqSoftmax:
    """One class per sequence: (B, C) logits, (B,) int targets."""

    def __init__(self):
        self._b = _Buffers()

    def loss(self, be, logits, targets, batch: Batch, grad: bool = True):
        B, C = logits.shape
        y = np.ascontiguousarray(targets, dtype=np.int32)
        dl = self._b.get(be, ("d", B, C), (B, C), logits.dtype) if grad else None
        s = be.xent(logits, y, dl, 1.0 / B)
        return float(s), B, dl

    @staticmethod
    def probs(logits: np.ndarray) -> np.ndarray:
        return softmax(logits)


class SigmoidBinary:
    """Binary classes 0/1 from one logit per sequence: (B, 1) logits, (B,) targets."""

    def loss(self, be, logits, targets, batch: Batch, grad: bool = True):
        z = be.to_host(logits).astype(np.float64).reshape(-1)  # (B,)
        y = np.asarray(targets, np.float64).reshape(-1)
        B = z.size
        s = float(np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))
        if not grad:
            return s, B, None
        d = ((1.0 / (1.0 + np.exp(-z)) - y) / B).astype(logits.dtype).reshape(B, 1)
        return s, B, be.to_device(d)

    @staticmethod
    def probs(logits: np.ndarray) -> np.ndarray:
        """(B, 1) logits -> (B, 2) probabilities of class 0 and class 1."""
        p1 = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64).reshape(-1)))
        return np.stack([1.0 - p1, p1], axis=1)
