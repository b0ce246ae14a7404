"""Many-to-one classifiers and per-character taggers as compositions of the layer stack.

    classify: Embedding | OneHot -> L x (Recurrent | Bidirectional) [Dropout between]
              -> Pool(last | mean) -> [Dense(dense, relu)] -> Dense(C) softmax | Dense(1) sigmoid
    tag:      Embedding | OneHot -> L x (Recurrent | Bidirectional) [Dropout between]
              -> [Dense(dense, relu)] -> Dense(C) per-step softmax
Parameter names are PyTorch's: embed.weight, rnn.weight_ih_l{k}[_reverse], ..., fc.*, head.*.
The course's Keras model Embedding(10000, 50) -> SimpleRNN(50) -> Dense(32) -> Dense(1, sigmoid)
is SeqConfig(task="classify", vocab_size=10000, embed=50, cell="rnn", layers=1, hidden=50,
dense=32, head="sigmoid", num_labels=2).

Default pooling: ``last`` (each sequence's last real step; for a bidirectional layer the reverse
half at t = 0): it is what Keras's return_sequences=False gives and what the course uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import CELLS, _check, _DictMixin
from ..heads import SeqSoftmax, SigmoidBinary, StepSoftmax
from ..layers import Batch, Bidirectional, Dense, Dropout, Embedding, OneHot, Pool, Recurrent
from .base import Params, Sequential

TASKS = ("classify", "tag")


@dataclass(frozen=True)
class SeqConfig(_DictMixin):
    """Shape of a classifier (task=classify) or a per-character tagger (task=tag)."""

    task: str
    vocab_size: int
    num_labels: int
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 64
    embed: int = 32               # 0 = one-hot input
    bidirectional: bool = False
    pool: str = "last"            # classify: last | mean
    head: str = "softmax"         # classify: softmax | sigmoid (binary labels only)
    dense: int = 0                # hidden Dense(relu) units before the head (0 = none)
    dropout: float = 0.0          # between recurrent layers, training only
    nonlinearity: str = "tanh"    # rnn only

    def __post_init__(self):
        _check(self.task in TASKS, f"unknown task {self.task!r}: choose {', '.join(TASKS)}")
        _check(self.cell in CELLS, f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        _check(self.vocab_size >= 1 and self.num_labels >= 2, "need a vocabulary and at least two labels")
        _check(self.layers >= 1 and self.hidden >= 1, "--layers and --hidden must be positive integers")
        _check(self.embed >= 0 and self.dense >= 0, "--embed and --dense must be >= 0")
        _check(self.pool in ("last", "mean"), "--pool must be last or mean")
        _check(self.head in ("softmax", "sigmoid"), "--head must be softmax or sigmoid")
        _check(self.head == "softmax" or (self.task == "classify" and self.num_labels == 2),
               f"--head sigmoid needs exactly two labels (this data has {self.num_labels}); use --head softmax")
        _check(0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)")
        _check(self.nonlinearity in ("tanh", "relu"), "--nonlinearity must be tanh or relu")


def build_layers(c: SeqConfig) -> list:
    emb = Embedding("embed", c.vocab_size, c.embed) if c.embed > 0 else OneHot(c.vocab_size)
    layers, F = [emb], emb.out_features
    relu = c.cell == "rnn" and c.nonlinearity == "relu"
    for k in range(c.layers):
        if k > 0 and c.dropout > 0:
            layers.append(Dropout(c.dropout, F))
        rec = (Bidirectional("rnn", c.cell, F, c.hidden, index=k, relu=relu) if c.bidirectional
               else Recurrent("rnn", c.cell, F, c.hidden, index=k, relu=relu))
        layers.append(rec)
        F = rec.out_features
    if c.task == "classify":
        layers.append(Pool(c.pool, F, nrev=c.hidden if c.bidirectional else 0))
    if c.dense > 0:
        layers.append(Dense("fc", F, c.dense, "relu"))
        F = c.dense
    layers.append(Dense("head", F, 1 if c.head == "sigmoid" else c.num_labels))
    return layers


class SeqModel:
    """A classifier or tagger: parameters in one flat buffer (``flat``/``grad_flat``), a head."""

    def __init__(self, config: SeqConfig, *, seed: int = 0, dtype=np.float32, device: str = "cpu"):
        self.config = config
        self.layers = build_layers(config)
        self.P = Params(self.layers, seed=seed, dtype=dtype, device=device)
        self.seq = Sequential(self.layers)
        self.head = (StepSoftmax() if config.task == "tag"
                     else SigmoidBinary() if config.head == "sigmoid" else SeqSoftmax())
        self.backend, self.dtype, self.size = self.P.backend, self.P.dtype, self.P.size
        self.flat, self.grad_flat = self.P.flat, self.P.grad_flat

    def state_dict(self):
        return self.P.state_dict()

    def load_state_dict(self, sd):
        self.P.load_state_dict(sd)

    def train_step(self, ids, targets, lengths, rng=None) -> float:
        """ids (T, B) int32 (padded), targets (B,) or (T, B), lengths (B,): mean loss; fills the gradients."""
        batch = Batch(*ids.shape, lengths, rng)
        out = self.seq.forward(ids, batch)
        s, n, d = self.head.loss(self.backend, out, targets, batch, grad=True)
        self.seq.backward(d, batch)
        return s / n

    def loss(self, ids, targets, lengths) -> tuple[float, int, np.ndarray]:
        """(sum of nats, count, host logits) without dropout."""
        batch = Batch(*ids.shape, lengths)
        out = self.seq.forward(ids, batch)
        s, n, _ = self.head.loss(self.backend, out, targets, batch, grad=False)
        return s, n, np.array(self.backend.to_host(out))

    def probs(self, ids, lengths) -> np.ndarray:
        """(B, C) for classify, (T, B, C) for tag: label probabilities (sigmoid: classes 0, 1)."""
        batch = Batch(*ids.shape, lengths)
        out = np.array(self.backend.to_host(self.seq.forward(ids, batch)))
        return self.head.probs(out)
