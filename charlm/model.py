"""CharLM: embedding -> L stacked recurrent layers -> linear head -> softmax cross-entropy,
composed from the layer stack (``charlm.layers``: Embedding | OneHot, Recurrent, Dropout, Dense)
with the per-step softmax head (``charlm.heads.StepSoftmax``).

The parameters live in ONE flat buffer (``flat``, and ``grad_flat`` for their gradients) with
named views in ``params`` / ``grads`` (``charlm.models.base.Params``), so the optimizer and the
gradient-norm clip are single fused passes. Names and shapes are those of a PyTorch module with
attributes ``embed`` (nn.Embedding), ``rnn`` (nn.RNN/LSTM/GRU, batch_first=False) and ``head``
(nn.Linear), so a state dict loads into PyTorch with ``strict=True`` unchanged, and back; run
directories written before the layer stack load unchanged (tests/test_lm_fixture.py).

This module never imports Numba: every array operation that matters goes through the backend
(``charlm.backends``), so the same code runs on the CPU or the GPU. Dropout masks are drawn on
the host from a ``np.random.Generator``, so the same seed gives the same masks on every device.

Initialization follows PyTorch's defaults: embedding N(0, 1); recurrent weights and biases
U(-1/sqrt(H), 1/sqrt(H)); head weight and bias U(-1/sqrt(H), 1/sqrt(H)), drawn in state-dict
order from one generator.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .backends import CellState
from .config import ModelConfig
from .heads import StepSoftmax
from .layers import Batch, Dense, Dropout, EmbeddingRecurrent, OneHot, Recurrent
from .models.base import Params


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names (PyTorch state-dict order) -> shapes."""
    V, E, H, G = config.vocab_size, config.embed, config.hidden, config.gates
    shapes: dict[str, tuple[int, ...]] = {}
    if E > 0:
        shapes["embed.weight"] = (V, E)
    for k in range(config.layers):
        inp = config.input_size if k == 0 else H
        shapes[f"rnn.weight_ih_l{k}"] = (G * H, inp)
        shapes[f"rnn.weight_hh_l{k}"] = (G * H, H)
        shapes[f"rnn.bias_ih_l{k}"] = (G * H,)
        shapes[f"rnn.bias_hh_l{k}"] = (G * H,)
    shapes["head.weight"] = (V, H)
    shapes["head.bias"] = (V,)
    return shapes


def count_params(config: ModelConfig) -> int:
    return sum(math.prod(s) for s in param_shapes(config).values())


def build_layers(config: ModelConfig) -> tuple[list, list]:
    """(all layers in order, the recurrent ones) of a CharLM."""
    c = config
    relu = c.cell == "rnn" and c.nonlinearity == "relu"
    layers, rec = [] if c.embed > 0 else [OneHot(c.vocab_size)], []
    for k in range(c.layers):
        if k == 0 and c.embed > 0:  # the embedding folded into layer 0's input projection where the cell can
            rec.append(EmbeddingRecurrent("embed", c.vocab_size, c.embed, "rnn", c.cell, c.hidden, relu=relu))
        else:
            rec.append(Recurrent("rnn", c.cell, c.input_size if k == 0 else c.hidden, c.hidden, index=k, relu=relu))
        layers.append(rec[-1])
        if k < c.layers - 1 and c.dropout > 0:
            layers.append(Dropout(c.dropout, c.hidden))
    layers.append(Dense("head", c.hidden, c.vocab_size))
    return layers, rec


class CharLM:
    """A character-level language model whose kernels run on a chosen backend."""

    def __init__(self, config: ModelConfig, *, seed: int = 0, dtype=np.float32, device: str = "cpu"):
        self.config = config
        self.layers, self.recurrent = build_layers(config)
        self.P = Params(self.layers, seed=seed, dtype=dtype, device=device)
        if self.P.shapes != param_shapes(config):
            raise AssertionError("the layer stack must name the parameters as param_shapes does")
        self.dtype, self.device, self.backend = self.P.dtype, device, self.P.backend
        self.shapes, self.names, self.size = self.P.shapes, self.P.names, self.P.size
        self.cell = self.backend.cells[config.cell]
        self.flat, self.grad_flat = self.P.flat, self.P.grad_flat          # (P,)
        self.params, self.grads = self.P.params, self.P.grads
        self.head = StepSoftmax()

    def use_backend(self, device: str) -> None:
        """Switch between the host backends (``numpy`` -> ``cpu`` once the kernels are compiled,
        ``charlm.trainer``); the parameters, gradients and carried state are the same arrays."""
        self.P.rebind(device)
        self.device, self.backend = device, self.P.backend
        self.cell = self.backend.cells[self.config.cell]

    @classmethod
    def from_state_dict(cls, config: ModelConfig, sd: dict, *, dtype=np.float32, device: str = "cpu"):
        model = cls(config, seed=0, dtype=dtype, device=device)
        model.load_state_dict(sd)
        return model

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the parameters, PyTorch names and shapes."""
        return self.P.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.P.load_state_dict(sd)

    # ----- state ------------------------------------------------------------------------------
    def init_state(self, batch: int):
        """Zero carried state: (h (L, B, H), c (L, B, H)); c stays zero for rnn and gru."""
        shape = (self.config.layers, batch, self.config.hidden)
        return (self.backend.zeros(shape, self.dtype), self.backend.zeros(shape, self.dtype))

    # ----- forward / backward -----------------------------------------------------------------
    def _forward(self, x, state, rng):
        """Run the stack over ids x (T, B) from the carried state: logits (T, B, V) and the batch."""
        T, B = x.shape
        batch = Batch(T, B, rng=rng)
        h0, c0 = state
        out = x
        for layer in self.layers:
            if isinstance(layer, Recurrent):
                k = self.recurrent.index(layer)
                out = layer.forward(out, batch, CellState(h0[k], c0[k]))
            else:
                out = layer.forward(out, batch)
        return out, batch

    def _final_state(self):
        L, be = self.config.layers, self.backend
        first = self.recurrent[0].final_state().h
        h = be.zeros((L,) + tuple(first.shape), self.dtype)
        cc = be.zeros(h.shape, self.dtype)
        for k, layer in enumerate(self.recurrent):
            st = layer.final_state()
            h[k] = st.h
            if st.c is not None:
                cc[k] = st.c
        return h, cc

    def train_step(self, x, y, state, rng: np.random.Generator | None = None):
        """Forward and truncated-BPTT backward over one window.

        x, y: (T, B) int32 input ids and next-character targets; state: (h, c) carried in.
        Fills ``grads``; returns (mean loss in nats per character, final state).
        ``rng`` draws the dropout masks (None: no dropout).
        """
        logits, batch = self._forward(x, state, rng)
        final = self._final_state()  # before backward: views of the workspaces
        s, n, dlogits = self.head.loss(self.backend, logits, y, batch, grad=True)
        dy = dlogits
        for layer in reversed(self.layers):  # truncated BPTT: no gradient from the next window
            dy = layer.backward(dy, batch)
        return s / n, final

    def frozen(self):
        """A scope (``with model.frozen():``) in which the caller changes no parameter, so the CPU
        cells pack their weights once for all its windows instead of once per window (the evaluation
        loops use it; ``backends.cpu.frozen``). Other backends: a scope that does nothing."""
        scope = getattr(self.backend, "frozen", None)
        return scope() if scope is not None else contextlib.nullcontext()

    def loss(self, x, y, state):
        """Evaluation over one window: (sum of nats, number of characters, final state). No dropout."""
        logits, batch = self._forward(x, state, None)
        s, n, _ = self.head.loss(self.backend, logits, y, batch, grad=False)
        return float(s), n, self._final_state()

    def logits(self, x, state):
        """Logits (T, B, V) as a host array, and the final state. No dropout."""
        logits, _ = self._forward(x, state, None)
        return self.backend.to_host(logits).copy(), self._final_state()
