"""The library's training entry point: ``train()`` (what ``charlm train`` runs) turns typed configs,
dicts or the CLI's option names into a run (``charlm.trainsetup.prepare_run``) and runs it with
``charlm.trainer.Trainer`` (whose docstring describes the loop: budgets, cadences, stopping, resume).
``Trainer``, ``TrainResult``, ``evaluate_ids`` and ``evaluate_pieces`` are importable from here too.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types

from .config import DataConfig, ModelConfig, TrainConfig
from .errors import UsageError
from .evaluation import evaluate_ids, evaluate_pieces
from .trainer import Trainer, TrainResult
from .trainsetup import prepare_run

__all__ = ["train", "Trainer", "TrainResult", "evaluate_ids", "evaluate_pieces"]


def train(sources=(), options: dict | None = None, *, data=None, model: ModelConfig | dict | None = None,
          train: TrainConfig | dict | None = None, out=None, resume: str | None = None, notice=None) -> TrainResult:
    """Train a model (what ``charlm train`` runs).

    Typed: ``train(data=DataConfig(sources=...) | path | [paths], model=ModelConfig(...),
    train=TrainConfig(...), out=RUN_DIR)``; each may also be a dict of the same field names. A
    ModelConfig is taken whole (its vocab_size is ignored: the corpus decides it); of a
    TrainConfig/DataConfig only the fields that differ from the defaults count as chosen.
    ``options`` (the CLI flags' names with underscores: ``hidden``, ``max_steps``, ``out``, ...)
    still works and wins over the typed arguments; ``resume`` names a run directory.
    """
    from .backends import cpu

    cpu.configure()  # the kernels' thread settings, before anything runs (the CPU kernels sample and evaluate)
    notice = notice or (lambda msg: None)
    sources, opts = list(sources), {}
    if isinstance(data, (str, os.PathLike, list, tuple)):
        sources += [os.fspath(p) for p in ([data] if isinstance(data, (str, os.PathLike)) else data)]
    elif data is not None:
        d = _config_options(data, DataConfig)
        sources += list(d.pop("sources", ()))
        opts.update(d)
    if model is not None:
        opts.update({k: v for k, v in _config_options(model, ModelConfig, whole=True).items() if k != "vocab_size"})
    if train is not None:
        opts.update(_config_options(train, TrainConfig))
    if out is not None:
        opts["out"] = os.fspath(out)
    opts.update(options or {})
    spec = prepare_run(sources, opts, resume=resume, notice=notice)
    return Trainer(spec, notice=notice).run()


def _config_options(cfg, cls, *, whole: bool = False) -> dict:
    """The option dict of a config object (its non-default fields, or all of them) or of a dict."""
    names = {f.name for f in dataclasses.fields(cls)}
    if isinstance(cfg, dict):
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise UsageError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        return dict(cfg)
    if not isinstance(cfg, cls):
        raise UsageError(f"expected a {cls.__name__} or a dict, not {type(cfg).__name__}")
    out = {}
    for f in dataclasses.fields(cls):
        v = getattr(cfg, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if whole or v != default:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


class _CallableModule(types.ModuleType):
    """``charlm.train(...)`` is the library's training function, but ``import charlm.train`` (this module)
    rebinds the package attribute ``charlm.train`` to the module itself; calling the module calls the
    function, so both spellings keep working whichever was imported first."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
