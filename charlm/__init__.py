"""charlm: character-level language models on Numba-compiled CPU kernels.

Public API (imported lazily, so ``import charlm`` is cheap):
    CharTokenizer            the char/byte tokenizer
    ModelConfig, TrainConfig, SampleConfig
    load(path)               a trained model: .sample(), .eval(), .score(), .tokenizer
    train(data=, model=, train=, out=)   train a model (what ``charlm train`` runs); typed configs or dicts
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "CharTokenizer": ("charlm.tokenizer", "CharTokenizer"),
    "ModelConfig": ("charlm.config", "ModelConfig"),
    "TrainConfig": ("charlm.config", "TrainConfig"),
    "SampleConfig": ("charlm.config", "SampleConfig"),
    "CharLM": ("charlm.model", "CharLM"),
    "load": ("charlm.loading", "load"),
    "train": ("charlm.train", "train"),
    "CharlmError": ("charlm.errors", "CharlmError"),
    "UsageError": ("charlm.errors", "UsageError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'charlm' has no attribute {name!r}")
