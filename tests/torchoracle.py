"""The PyTorch oracle: ``torch = oracle()`` skips a test module when torch is missing locally,
but FAILS under CI (CI=true), where the oracle must run."""

from __future__ import annotations

import os

import pytest


def oracle():
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        import torch  # an ImportError here fails the run: CI must have the oracle

        return torch
    return pytest.importorskip("torch")


def torch_charlm(config):
    """PyTorch's version of a charlm LM ``config`` (a ModelConfig): modules embed (absent for one-hot
    input) / rnn / head, so a charlm state dict loads with strict=True. Call it as
    ``tm(x, h0=None, c0=None) -> (logits (T, B, V), hT, cT)`` with x (T, B) long, states (L, B, H)
    (None: zeros; cT is zeros but for the LSTM)."""
    torch = oracle()
    nn = torch.nn

    class TorchCharLM(nn.Module):
        def __init__(self):
            super().__init__()
            if config.embed > 0:
                self.embed = nn.Embedding(config.vocab_size, config.embed)
            kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
            kw = {"nonlinearity": config.nonlinearity} if config.cell == "rnn" else {}
            self.rnn = kind(config.input_size, config.hidden, num_layers=config.layers, **kw)
            self.head = nn.Linear(config.hidden, config.vocab_size)

        def forward(self, x, h0=None, c0=None):
            if config.embed > 0:
                inp = self.embed(x)
            else:
                inp = nn.functional.one_hot(x, config.vocab_size).to(self.head.weight.dtype)
            if config.cell == "lstm":
                out, (hT, cT) = self.rnn(inp, None if h0 is None else (h0, c0))
            else:
                out, hT = self.rnn(inp, h0)
                cT = torch.zeros_like(hT)
            return self.head(out), hT, cT

    return TorchCharLM()
