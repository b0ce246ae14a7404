"""What every layer shares: the batch description and the layer protocol.

A layer owns named parameters (PyTorch state-dict names, full: ``rnn.weight_ih_l0``), knows how
to initialize them, and runs a paired ``forward`` / ``backward`` over a (T, B, F) window on a
backend. The model that composes layers (``charlm.models.base.Stack``) holds every parameter in
one flat buffer and binds each layer to its named views; layers never allocate parameters.

Protocol (every layer):
    shapes() -> {name: shape}             in state-dict order
    init(views, rng)                      fill host views of its parameters (PyTorch's defaults)
    bind(backend, dtype, params, grads)   named backend views of the parameters and gradients
    out_features                          the F of its output
    forward(x, batch) -> y                x (T, B, F_in) (ids (T, B) for Embedding); y (T, B, F_out)
                                          or (B, F_out) after a Pool
    backward(dy, batch) -> dx             after forward on the same batch; OVERWRITES its parameter
                                          gradients (each parameter belongs to one layer); dx is None
                                          when the input needs no gradient (ids)
Returned arrays are the layer's own buffers, reused by the next call with the same (T, B): copy
what must outlive it.
"""

from __future__ import annotations

import numpy as np


class Batch:
    """One window's shape, its sequences' lengths and the dropout generator.

    lengths: (B,) ints, 1 <= L_b <= T, or None when every sequence fills the window (the LM).
    rng: np.random.Generator for dropout masks, or None (evaluation: no dropout).
    Padding sits at the end of each sequence (positions t >= L_b) and never reaches a real
    position: recurrent layers are causal in their own direction and a reverse layer reverses
    each sequence within its own length; heads read real positions only, so pads get no gradient.
    """

    def __init__(self, T: int, B: int, lengths=None, rng: np.random.Generator | None = None):
        self.T, self.B, self.rng = int(T), int(B), rng
        if lengths is not None:
            lengths = np.ascontiguousarray(lengths, dtype=np.int64)
            if lengths.shape != (self.B,) or lengths.min() < 1 or lengths.max() > self.T:
                raise ValueError(f"lengths must be (B,) = ({self.B},) in [1, {self.T}]")
        self.lengths = lengths
        self._dev = {}

    @property
    def full(self) -> bool:
        return self.lengths is None or bool((self.lengths == self.T).all())

    def lens(self) -> np.ndarray:
        """(B,) int64 host lengths (T for every sequence when none were given)."""
        return np.full(self.B, self.T, np.int64) if self.lengths is None else self.lengths

    def mask(self) -> np.ndarray:
        """(T, B) bool: real positions."""
        return np.arange(self.T)[:, None] < self.lens()[None, :]

    def valid_rows(self) -> np.ndarray:
        """(M,) int64: flat row indices t*B + b of the real positions, in (t, b) order."""
        return np.flatnonzero(self.mask().reshape(-1)).astype(np.int64)

    def on(self, backend, key: str, host: np.ndarray):
        """A device copy of a host index array, made once per batch."""
        if key not in self._dev:
            self._dev[key] = backend.to_device(host)
        return self._dev[key]


class Layer:
    """Base: no parameters, buffers cached per (T, B) (at most 4 shapes, as evaluation tails add odd ones)."""

    out_features: int = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def init(self, views: dict, rng: np.random.Generator) -> None:
        pass

    def bind(self, backend, dtype, params: dict, grads: dict) -> None:
        self.be, self.dtype, self.p, self.g = backend, np.dtype(dtype), params, grads
        self._bufs: dict = {}

    def buffers(self, batch: Batch, make) -> dict:
        """This layer's buffers for the batch's (T, B): ``make(T, B)`` -> dict, made once per shape."""
        key = (batch.T, batch.B)
        buf = self._bufs.get(key)
        if buf is None:
            if len(self._bufs) >= 4:
                self._bufs.pop(next(iter(self._bufs)))
            buf = self._bufs[key] = make(batch.T, batch.B)
        return buf

    def zeros(self, *shape):
        return self.be.zeros(shape, self.dtype)

    def forward(self, x, batch: Batch):
        raise NotImplementedError

    def backward(self, dy, batch: Batch):
        raise NotImplementedError


def uniform_init(views: dict, names, bound: float, rng: np.random.Generator) -> None:
    """PyTorch's default for recurrent and linear layers: U(-bound, bound), in ``names`` order."""
    for n in names:
        views[n][...] = rng.uniform(-bound, bound, views[n].shape)
