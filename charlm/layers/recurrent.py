"""Recurrent layers over a window: Recurrent(cell, reverse) and Bidirectional.

Recurrent runs one backend cell (``backend.cells[cell]``, contract in ``charlm.backends``).
The reverse direction runs the same kernels on each sequence reversed within its own length
(``reverse_seq``), then reverses the outputs back, so y[t] of a reverse layer has read
positions t..L_b-1. Parameter names are PyTorch's nn.RNN/LSTM/GRU ones:
``{prefix}.weight_ih_l{k}``, ``weight_hh``, ``bias_ih``, ``bias_hh`` with ``_reverse`` appended
for the reverse direction, so a stack of Bidirectional layers loads into
``nn.LSTM(bidirectional=True)`` with strict=True. Init: U(-1/sqrt(H), 1/sqrt(H)).

Carried state (the LM's truncated BPTT): forward(x, batch, state0) starts from state0
(CellState, zeros when None); final_state() is the state after step T-1 (in the cell's own
order); backward(dy, batch, dstateT) takes the gradient of that final state, and leaves the
gradient of state0 in ``dstate0``. With variable lengths each sequence's own final output is
y[L_b-1] (forward) or y[0] (reverse): ``Pool("last")`` reads those.
"""

from __future__ import annotations

import math

from ..backends import CellState, CellWeights
from .base import Batch, Layer, uniform_init


class Recurrent(Layer):
    """x (T, B, I) -> y (T, B, H) through one cell, forward or reverse in time."""

    def __init__(self, prefix: str, cell: str, inputs: int, hidden: int, *, index: int = 0,
                 reverse: bool = False, relu: bool = False):
        self.cell_name, self.inputs, self.hidden, self.reverse = cell, inputs, hidden, reverse
        self.relu = relu
        self.out_features = hidden
        sfx = f"_l{index}" + ("_reverse" if reverse else "")
        self.names = CellWeights(*(f"{prefix}.{n}{sfx}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))

    @property
    def gates(self) -> int:
        from ..config import GATES

        return GATES[self.cell_name]

    def shapes(self):
        GH, I, H = self.gates * self.hidden, self.inputs, self.hidden
        return dict(zip(self.names, ((GH, I), (GH, H), (GH,), (GH,)), strict=True))

    def init(self, views, rng):
        uniform_init(views, self.names, 1.0 / math.sqrt(self.hidden), rng)

    def bind(self, backend, dtype, params, grads):
        super().bind(backend, dtype, params, grads)
        self.cell = backend.cells[self.cell_name]
        self.w = CellWeights(*(params[n] for n in self.names))
        self.dw = CellWeights(*(grads[n] for n in self.names))

    def _make(self, T, B):
        opts = {"relu": True} if self.relu else {}
        z = self.zeros
        buf = {"ws": self.cell.alloc(T, B, self.inputs, self.hidden, self.dtype, **opts),
               "dx": z(T, B, self.inputs), "zero": z(B, self.hidden),
               "dstate0": CellState(z(B, self.hidden), z(B, self.hidden))}
        if self.reverse:
            buf.update(xr=z(T, B, self.inputs), y=z(T, B, self.hidden), dyr=z(T, B, self.hidden),
                       dxr=z(T, B, self.inputs))
        return buf

    def forward(self, x, batch: Batch, state0: CellState | None = None):
        buf = self._buf = self.buffers(batch, self._make)
        if state0 is None:
            state0 = CellState(buf["zero"], buf["zero"])
        xin = x
        if self.reverse:
            lens = batch.on(self.be, "lens", batch.lens())
            self.be.reverse_seq(buf["xr"], x, lens)  # (T, B, I) each sequence reversed in its length
            xin = buf["xr"]
        self._x = xin
        self.cell.forward(buf["ws"], xin, state0, self.w)
        if not self.reverse:
            return buf["ws"].hs  # (T, B, H)
        self.be.reverse_seq(buf["y"], buf["ws"].hs, lens)
        return buf["y"]

    def final_state(self) -> CellState:
        """State after step T-1 of the last forward (views into the workspace)."""
        ws = self._buf["ws"]
        return CellState(ws.hs[-1], ws.cs[-1] if hasattr(ws, "cs") else None)

    def backward(self, dy, batch: Batch, dstateT: CellState | None = None):
        buf = self._buf
        if dstateT is None:
            dstateT = CellState(buf["zero"], buf["zero"])
        dys, dx = dy, buf["dx"]
        if self.reverse:
            lens = batch.on(self.be, "lens", batch.lens())
            self.be.reverse_seq(buf["dyr"], dy, lens)
            dys, dx = buf["dyr"], buf["dxr"]
        self.cell.backward(buf["ws"], self.dw, dx, buf["dstate0"], self._x, dys, dstateT)
        self.dstate0 = buf["dstate0"]
        if not self.reverse:
            return dx  # (T, B, I)
        self.be.reverse_seq(buf["dx"], dx, lens)
        return buf["dx"]


class Bidirectional(Layer):
    """x (T, B, I) -> y (T, B, 2H): [forward outputs, reverse outputs] (Keras/PyTorch order)."""

    def __init__(self, prefix: str, cell: str, inputs: int, hidden: int, *, index: int = 0, relu: bool = False):
        self.fwd = Recurrent(prefix, cell, inputs, hidden, index=index, relu=relu)
        self.bwd = Recurrent(prefix, cell, inputs, hidden, index=index, reverse=True, relu=relu)
        self.inputs, self.hidden, self.out_features = inputs, hidden, 2 * hidden

    def shapes(self):
        return {**self.fwd.shapes(), **self.bwd.shapes()}

    def init(self, views, rng):
        self.fwd.init(views, rng)
        self.bwd.init(views, rng)

    def bind(self, backend, dtype, params, grads):
        super().bind(backend, dtype, params, grads)
        self.fwd.bind(backend, dtype, params, grads)
        self.bwd.bind(backend, dtype, params, grads)

    def forward(self, x, batch: Batch):
        H = self.hidden
        buf = self._buf = self.buffers(batch, lambda T, B: {
            "y": self.zeros(T, B, 2 * H), "dyf": self.zeros(T, B, H), "dyb": self.zeros(T, B, H),
            "dx": self.zeros(T, B, self.inputs)})
        self.be.concat_last(buf["y"], self.fwd.forward(x, batch), self.bwd.forward(x, batch))
        return buf["y"]  # (T, B, 2H)

    def backward(self, dy, batch: Batch):
        buf = self._buf
        self.be.split_last(buf["dyf"], buf["dyb"], dy)
        dxf = self.fwd.backward(buf["dyf"], batch)
        dxb = self.bwd.backward(buf["dyb"], batch)
        self.be.add(buf["dx"], dxf, dxb)
        return buf["dx"]  # (T, B, I)


class EmbeddingRecurrent(Recurrent):
    """ids (T, B) -> y (T, B, H): Embedding then a forward Recurrent (layer 0 of the char LM) as
    one layer, so the embedding can be folded into the input projection (``backends.cpu.fold``:
    a (V, G*H) table per window instead of a T*B-row GEMM, and no dx). Cells that cannot fold
    (``FOLDS`` false: the CUDA backend) run the two layers one after the other. Parameters: the
    Embedding's ``{embed_prefix}.weight`` (V, E) first, then the Recurrent's, as before."""

    def __init__(self, embed_prefix: str, vocab: int, dim: int, prefix: str, cell: str, hidden: int, *,
                 relu: bool = False):
        from .embed import Embedding

        super().__init__(prefix, cell, dim, hidden, index=0, relu=relu)
        self.embed = Embedding(embed_prefix, vocab, dim)

    def shapes(self):
        return {**self.embed.shapes(), **super().shapes()}

    def init(self, views, rng):
        self.embed.init(views, rng)
        super().init(views, rng)

    def bind(self, backend, dtype, params, grads):
        super().bind(backend, dtype, params, grads)
        self.embed.bind(backend, dtype, params, grads)
        self.folds = bool(getattr(self.cell, "FOLDS", False))
        if self.folds:
            self._scratch = self.cell.fold_alloc(self.embed.vocab, self.inputs, self.gates * self.hidden, self.dtype)

    def forward(self, ids, batch: Batch, state0: CellState | None = None):
        if not self.folds:
            return super().forward(self.embed.forward(ids, batch), batch, state0)
        buf = self._buf = self.buffers(batch, self._make)
        if state0 is None:
            state0 = CellState(buf["zero"], buf["zero"])
        tab, dtab = self._scratch[:2]
        demb = self.g[self.embed.name]  # (V, E): backward writes the embedding's gradient here
        self._x = self.cell.Folded(ids, self.p[self.embed.name], tab, dtab, demb)
        self.cell.forward(buf["ws"], self._x, state0, self.w)
        return buf["ws"].hs  # (T, B, H)

    def backward(self, dy, batch: Batch, dstateT: CellState | None = None):
        if not self.folds:
            self.embed.backward(super().backward(dy, batch, dstateT), batch)
            return None
        buf = self._buf
        if dstateT is None:
            dstateT = CellState(buf["zero"], buf["zero"])
        self.cell.backward(buf["ws"], self.dw, buf["dx"], buf["dstate0"], self._x, dy, dstateT)
        self.dstate0 = buf["dstate0"]
        return None
