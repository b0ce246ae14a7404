"""The layer stack: each layer's forward directly above its backward, on any backend.

    Embedding(prefix, V, E), OneHot(V)                           ids (T, B) -> (T, B, E | V)
    Recurrent(prefix, cell, I, H, index=k, reverse=False, relu=False)   (T, B, I) -> (T, B, H)
    Bidirectional(prefix, cell, I, H, index=k, relu=False)      (T, B, I) -> (T, B, 2H)
    EmbeddingRecurrent(eprefix, V, E, prefix, cell, H)            ids (T, B) -> (T, B, H), embedding folded in
    Dropout(rate, F)                                             identity at evaluation
    Dense(prefix, I, O, activation="none"|"relu"|"sigmoid"|"tanh")    (..., I) -> (..., O)
    Pool("last"|"mean", F, nrev=0)                              (T, B, F) -> (B, F)
``Batch(T, B, lengths=None, rng=None)`` describes a window (variable lengths: padding at the end
of each sequence + lengths) and is passed to every forward and backward. The protocol and the
rules about buffers: ``charlm.layers.base``. Compose with ``charlm.models.base.Params`` (one flat
parameter buffer) and ``Sequential``; losses in ``charlm.heads``.
"""

from .base import Batch, Layer
from .dense import Dense
from .dropout import Dropout
from .embed import Embedding, OneHot
from .pool import Pool
from .recurrent import Bidirectional, EmbeddingRecurrent, Recurrent

__all__ = ["Batch", "Bidirectional", "Dense", "Dropout", "Embedding", "EmbeddingRecurrent", "Layer", "OneHot", "Pool",
           "Recurrent"]
