"""Inverted dropout: at training time (batch.rng given) y = x * mask / (1 - p) with a mask drawn on
the host from batch.rng (the same seed gives the same masks on every device); identity otherwise."""

from __future__ import annotations

import numpy as np

from .base import Batch, Layer


class Dropout(Layer):
    def __init__(self, rate: float, features: int):
        if not 0.0 <= rate < 1.0:
            raise ValueError("dropout rate must be in [0, 1)")
        self.rate, self.out_features = rate, features

    def forward(self, x, batch: Batch):
        self._on = batch.rng is not None and self.rate > 0
        if not self._on:
            return x
        buf = self._buf = self.buffers(batch, lambda T, B: {})
        shape = tuple(x.shape)
        if shape not in buf:
            buf[shape] = {"mask": self.be.zeros(shape, self.dtype), "y": self.be.zeros(shape, self.dtype)}
        b = self._cur = buf[shape]
        keep = batch.rng.random(shape, dtype=np.float32) >= self.rate
        b["mask"][:] = self.be.to_device(keep.astype(self.dtype) * self.dtype.type(1.0 / (1.0 - self.rate)))
        self.be.mul(b["y"], x, b["mask"])
        return b["y"]

    def backward(self, dy, batch: Batch):
        if not self._on:
            return dy
        self.be.mul(dy, dy, self._cur["mask"])  # in place: dy is the layer above's own dx buffer
        return dy
