"""Character ids -> vectors: Embedding (learned table, PyTorch nn.Embedding, init N(0, 1)) and
OneHot (no parameters, E = V)."""

from __future__ import annotations

from .base import Batch, Layer


class Embedding(Layer):
    """ids (T, B) int32 -> (T, B, E); parameter ``{prefix}.weight`` (V, E)."""

    def __init__(self, prefix: str, vocab: int, dim: int):
        self.name = f"{prefix}.weight"
        self.vocab, self.out_features = vocab, dim

    def shapes(self):
        return {self.name: (self.vocab, self.out_features)}

    def init(self, views, rng):
        views[self.name][...] = rng.standard_normal(views[self.name].shape)

    def forward(self, ids, batch: Batch):
        buf = self.buffers(batch, lambda T, B: {"out": self.zeros(T, B, self.out_features)})
        self._ids = ids
        self.be.embed_forward(buf["out"], ids, self.p[self.name])  # (T, B, E)
        return buf["out"]

    def backward(self, dy, batch: Batch):
        self.be.embed_backward(self.g[self.name], self._ids, dy)  # (V, E) overwritten
        return None


class OneHot(Layer):
    """ids (T, B) int32 -> (T, B, V) one-hot rows (no parameters, no gradient)."""

    def __init__(self, vocab: int):
        self.out_features = vocab

    def forward(self, ids, batch: Batch):
        buf = self.buffers(batch, lambda T, B: {"out": self.zeros(T, B, self.out_features)})
        self.be.onehot(buf["out"], ids)  # (T, B, V)
        return buf["out"]

    def backward(self, dy, batch: Batch):
        return None
