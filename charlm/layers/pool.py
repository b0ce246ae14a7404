"""Many-to-one: (T, B, F) sequence outputs -> (B, F) per sequence.

    Pool("last", nrev)  each sequence's last real step; for the reverse half of a Bidirectional
                        output (the last ``nrev`` features) that is t = 0, where the reverse
                        direction has read the whole sequence (Keras's Bidirectional with
                        return_sequences=False: [forward final state, reverse final state]).
    Pool("mean")        the mean over each sequence's real steps.
"""

from __future__ import annotations

from .base import Batch, Layer

POOLS = ("last", "mean")


class Pool(Layer):
    def __init__(self, kind: str, features: int, nrev: int = 0):
        if kind not in POOLS:
            raise ValueError(f"unknown pooling {kind!r}: choose {', '.join(POOLS)}")
        self.kind, self.out_features, self.nrev = kind, features, nrev

    def forward(self, x, batch: Batch):
        F = self.out_features
        buf = self._buf = self.buffers(batch, lambda T, B: {"y": self.zeros(B, F), "dx": self.zeros(T, B, F)})
        lens = batch.on(self.be, "lens", batch.lens())
        if self.kind == "last":
            self.be.pool_last(buf["y"], x, lens, self.nrev)
        else:
            self.be.pool_mean(buf["y"], x, lens)
        return buf["y"]  # (B, F)

    def backward(self, dy, batch: Batch):
        buf = self._buf
        lens = batch.on(self.be, "lens", batch.lens())
        if self.kind == "last":
            self.be.pool_last_backward(buf["dx"], dy, lens, self.nrev)
        else:
            self.be.pool_mean_backward(buf["dx"], dy, lens)
        return buf["dx"]  # (T, B, F)
