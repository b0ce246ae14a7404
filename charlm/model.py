"""CharLM: embedding -> L stacked recurrent layers -> linear head -> softmax cross-entropy.

The parameters live in ONE flat buffer (``flat``, and ``grad_flat`` for their
gradients) with named views in ``params`` / ``grads``, so the optimizer and the
gradient-norm clip are single fused passes. Names and shapes are those of a
PyTorch module with attributes ``embed`` (nn.Embedding), ``rnn``
(nn.RNN/LSTM/GRU, batch_first=False) and ``head`` (nn.Linear), so a state dict
loads into PyTorch with ``strict=True`` unchanged, and back.

This module never imports Numba: every array operation that matters goes
through the backend (``charlm.backends``), so the same code runs on the CPU or
the GPU. Dropout masks are drawn on the host from a ``np.random.Generator``, so
the same seed gives the same masks on every device.

Initialization follows PyTorch's defaults: embedding N(0, 1); recurrent weights
and biases U(-1/sqrt(H), 1/sqrt(H)); head weight and bias U(-1/sqrt(H), 1/sqrt(H)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import backends
from .backends import CellState, CellWeights
from .config import ModelConfig


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


@dataclass
class _Window:
    """Buffers for one (T, B) window shape, allocated once and reused."""

    ws: list                      # per layer: the cell's workspace (ws.hs is (T, B, H))
    inp0: np.ndarray              # (T, B, I0) embedded or one-hot input of layer 0
    masks: list                   # per layer < L-1: (T, B, H) dropout mask (scaled), or None
    dropped: list                 # per layer < L-1: (T, B, H) masked output fed upward
    logits: np.ndarray            # (N, V) logits, overwritten in place by dlogits
    dh: np.ndarray                # (T, B, H) gradient flowing down into the top layer
    dx: list                      # per layer: (T, B, I_k) gradient wrt that layer's input
    dh0: np.ndarray               # (B, H) scratch for d(initial h)
    dc0: np.ndarray               # (B, H) scratch for d(initial c)
    zeros_bh: np.ndarray          # (B, H) zeros: dL/d(final state) under truncated BPTT


class CharLM:
    """A character-level language model whose kernels run on a chosen backend."""

    def __init__(self, config: ModelConfig, *, seed: int = 0, dtype=np.float32, device: str = "cpu"):
        self.config = config
        self.dtype = np.dtype(dtype)
        self.device = device
        self.backend = backends.get(device)
        self.shapes = param_shapes(config)
        self.names = list(self.shapes)
        self.size = sum(math.prod(s) for s in self.shapes.values())
        self.cell = self.backend.cells[config.cell]
        self.cell_opts = {"relu": True} if config.cell == "rnn" and config.nonlinearity == "relu" else {}
        host = self._init_host(np.random.default_rng(seed))
        self.flat = self.backend.to_device(host)              # (P,)
        self.grad_flat = self.backend.zeros(self.size, self.dtype)  # (P,)
        self.params = self._views(self.flat)
        self.grads = self._views(self.grad_flat)
        self._windows: dict[tuple[int, int], _Window] = {}

    # ----- parameters -------------------------------------------------------------------------
    def _init_host(self, rng: np.random.Generator) -> np.ndarray:
        flat = np.empty(self.size, dtype=self.dtype)
        views = self._views(flat)
        bound = 1.0 / math.sqrt(self.config.hidden)
        for name, v in views.items():
            if name == "embed.weight":
                v[...] = rng.standard_normal(v.shape)
            else:
                v[...] = rng.uniform(-bound, bound, v.shape)
        return flat

    def _views(self, flat) -> dict:
        views, off = {}, 0
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            views[name] = flat[off:off + n].reshape(shape)
            off += n
        return views

    @classmethod
    def from_state_dict(cls, config: ModelConfig, sd: dict, *, dtype=np.float32, device: str = "cpu"):
        model = cls(config, seed=0, dtype=dtype, device=device)
        model.load_state_dict(sd)
        return model

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the parameters, PyTorch names and shapes."""
        host = self.backend.to_host(self.flat)
        return {name: np.array(v, copy=True) for name, v in self._views(host).items()}

    def load_state_dict(self, sd: dict) -> None:
        from .checkpoint import validate_state_dict

        validate_state_dict(sd, self.shapes)
        host = np.empty(self.size, dtype=self.dtype)
        views = self._views(host)
        for name in self.names:
            views[name][...] = sd[name]
        self.flat[:] = self.backend.to_device(host)

    # ----- state ------------------------------------------------------------------------------
    def init_state(self, batch: int):
        """Zero carried state: (h (L, B, H), c (L, B, H)); c stays zero for rnn and gru."""
        shape = (self.config.layers, batch, self.config.hidden)
        return (self.backend.zeros(shape, self.dtype), self.backend.zeros(shape, self.dtype))

    # ----- forward / backward -----------------------------------------------------------------
    def _window(self, T: int, B: int) -> _Window:
        key = (T, B)
        win = self._windows.get(key)
        if win is not None:
            return win
        if len(self._windows) >= 4:  # bound memory: evaluation tails add odd shapes
            self._windows.pop(next(iter(self._windows)))
        c, be, dt = self.config, self.backend, self.dtype
        L, H = c.layers, c.hidden
        sizes = [c.input_size] + [H] * (L - 1)
        drop = c.dropout > 0
        win = _Window(
            ws=[self.cell.alloc(T, B, sizes[k], H, dt, **self.cell_opts) for k in range(L)],
            inp0=be.zeros((T, B, c.input_size), dt),
            masks=[be.zeros((T, B, H), dt) if drop else None for _ in range(L - 1)],
            dropped=[be.zeros((T, B, H), dt) if drop else None for _ in range(L - 1)],
            logits=be.zeros((T * B, c.vocab_size), dt),
            dh=be.zeros((T, B, H), dt),
            dx=[be.zeros((T, B, sizes[k]), dt) for k in range(L)],
            dh0=be.zeros((B, H), dt),
            dc0=be.zeros((B, H), dt),
            zeros_bh=be.zeros((B, H), dt),
        )
        self._windows[key] = win
        return win

    def _layer_weights(self, k: int, params: dict):
        return CellWeights(params[f"rnn.weight_ih_l{k}"], params[f"rnn.weight_hh_l{k}"],
                           params[f"rnn.bias_ih_l{k}"], params[f"rnn.bias_hh_l{k}"])

    def _forward(self, x, state, rng) -> tuple[_Window, list]:
        """Run the stack over ids x (T, B); fills win.logits (N, V). Returns the layer inputs."""
        be, c, p = self.backend, self.config, self.params
        T, B = x.shape
        win = self._window(T, B)
        h0, c0 = state
        if c.embed > 0:
            be.embed_forward(win.inp0, x, p["embed.weight"])
        else:
            be.onehot(win.inp0, x)
        inputs = [win.inp0]
        for k in range(c.layers):
            self.cell.forward(win.ws[k], inputs[k], CellState(h0[k], c0[k]), self._layer_weights(k, p))
            out = win.ws[k].hs                                   # (T, B, H)
            if k < c.layers - 1:
                if rng is not None and c.dropout > 0:
                    keep = rng.random((T, B, c.hidden), dtype=np.float32) >= c.dropout
                    mask = keep.astype(self.dtype) * self.dtype.type(1.0 / (1.0 - c.dropout))
                    win.masks[k][:] = be.to_device(mask)
                    be.mul(win.dropped[k], out, win.masks[k])
                    out = win.dropped[k]
                inputs.append(out)
        top = win.ws[-1].hs.reshape(T * B, c.hidden)              # (N, H)
        be.linear_forward(win.logits, top, p["head.weight"], p["head.bias"])
        return win, inputs

    def _final_state(self, win: _Window):
        h = self.backend.zeros((self.config.layers,) + win.ws[0].hs.shape[1:], self.dtype)
        cc = self.backend.zeros(h.shape, self.dtype)
        for k, ws in enumerate(win.ws):
            h[k] = ws.hs[-1]
            if hasattr(ws, "cs"):
                cc[k] = ws.cs[-1]
        return h, cc

    def train_step(self, x, y, state, rng: np.random.Generator | None = None):
        """Forward and truncated-BPTT backward over one window.

        x, y: (T, B) int32 input ids and next-character targets; state: (h, c) carried in.
        Fills ``grads``; returns (mean loss in nats per character, final state).
        ``rng`` draws the dropout masks (None: no dropout).
        """
        be, c, p, g = self.backend, self.config, self.params, self.grads
        T, B = x.shape
        N = T * B
        win, inputs = self._forward(x, state, rng)
        loss_sum = be.xent(win.logits, y.reshape(N), win.logits, 1.0 / N)   # logits -> dlogits
        top = win.ws[-1].hs.reshape(N, c.hidden)
        be.linear_backward(win.dh.reshape(N, c.hidden), g["head.weight"], g["head.bias"],
                           win.logits, top, p["head.weight"])
        dout = win.dh                                             # (T, B, H) dL/d(top layer output)
        zero = CellState(win.zeros_bh, win.zeros_bh)              # truncated BPTT: no gradient from the future
        for k in reversed(range(c.layers)):
            self.cell.backward(win.ws[k], self._layer_weights(k, g), win.dx[k], CellState(win.dh0, win.dc0),
                               inputs[k], dout, zero)
            dout = win.dx[k]
            if k > 0 and win.masks[k - 1] is not None and rng is not None and c.dropout > 0:
                be.mul(dout, dout, win.masks[k - 1])
        if c.embed > 0:
            be.embed_backward(g["embed.weight"], x, win.dx[0])
        return loss_sum / N, self._final_state(win)

    def loss(self, x, y, state):
        """Evaluation over one window: (sum of nats, number of characters, final state). No dropout."""
        T, B = x.shape
        win, _ = self._forward(x, state, None)
        loss_sum = self.backend.xent(win.logits, y.reshape(T * B), None, 1.0)
        return float(loss_sum), T * B, self._final_state(win)

    def logits(self, x, state):
        """Logits (T, B, V) as a host array, and the final state. No dropout."""
        T, B = x.shape
        win, _ = self._forward(x, state, None)
        out = self.backend.to_host(win.logits).reshape(T, B, self.config.vocab_size).copy()
        return out, self._final_state(win)

