"""Loading a trained language model: ``load(RUN_DIR | model.safetensors)`` -> ``charlm.generate.Model``,
or one of a run's resume checkpoints (``load_checkpoint``, ``checkpoint_steps``). A model file is
checked before use: its task (a seq2seq, classify or tag model names the command that uses it), its
config, that the tokenizer matches the vocabulary, finite weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import ModelConfig
from .errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from .generate import Model

# model files of other tasks (model_config["task"]) -> the command that uses them
_OTHER_TASKS = {"seq2seq": "charlm seq2seq translate RUN TEXT", "classify": "charlm classify predict RUN TEXT",
                "tag": "charlm tag RUN TEXT"}


def load(path, *, device: str = "cpu", checkpoint=None) -> Model:
    """Load a ``RUN_DIR`` or ``model.safetensors`` written by charlm.

    ``checkpoint`` picks a resume checkpoint of RUN_DIR instead of its best model: a step number
    (one of the steps kept, see ``checkpoint_steps``) or the path of a checkpoint file.
    """
    from .backends import resolve_device
    from .checkpoint import load_model, resolve_model_path
    from .generate import Model
    from .model import CharLM

    if checkpoint is not None:
        return load_checkpoint(path, checkpoint, device=device)
    _no_model_yet(path)
    sd, meta = load_model(path)
    where = resolve_model_path(path)
    config, tok = lm_config_and_tokenizer(where, sd, meta)
    model = CharLM.from_state_dict(config, sd, device=resolve_device(device))
    return Model(model, tok, meta=meta)


def lm_config_and_tokenizer(where, sd: dict, meta: dict):
    """(ModelConfig, CharTokenizer) of a language-model file's metadata, after the checks every reader of
    one needs: the file is a language model, its config and vocabulary agree, its weights are finite."""
    from .tokenizer import CharTokenizer

    task = meta["model_config"].get("task")
    if task in _OTHER_TASKS:
        raise UsageError(f"{where} is a {task} model, not a language model: use {_OTHER_TASKS[task]}")
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (UsageError, TypeError) as e:
        raise CheckpointError(f"{where}: bad model_config ({e}); the file is corrupt or foreign") from None
    tok = CharTokenizer.from_dict(meta["tokenizer"])
    if len(tok) != config.vocab_size:
        raise CheckpointError(f"{where}: the tokenizer has {len(tok)} symbols but the model {config.vocab_size}; "
                              "the file is corrupt: retrain or use another file")
    bad = next((name for name, a in sd.items() if not np.isfinite(a).all()), None)
    if bad is not None:
        raise CheckpointError(f"{where}: tensor {bad!r} holds NaN or infinite values (the training diverged, or "
                              "the file was damaged before its checksum was made): use an earlier checkpoint "
                              "or retrain")
    return config, tok


def checkpoint_steps(run_dir) -> dict:
    """{step: path} of the resume checkpoints of RUN_DIR that can be read (headers only)."""
    from . import tensorfile
    from .checkpoint import CHECKPOINT_FORMAT, _checker, checkpoint_paths
    from .errors import CharlmError

    found = {}
    for p in checkpoint_paths(run_dir):
        if not p.is_file():
            continue
        try:
            md, _ = tensorfile.read(p, missing_msg="", header_only=True, check_meta=_checker(CHECKPOINT_FORMAT))
        except CharlmError:
            continue
        found.setdefault(int(md["step"]), p)
    return dict(sorted(found.items()))


def _saved_steps(found: dict) -> str:
    return ", ".join(str(k) for k in found) if found else "none yet"


def _no_model_yet(path) -> None:
    """A run directory that has not written model.safetensors yet: say when it will, and what to do now."""
    import json
    import os

    from . import rundir
    from .checkpoint import MODEL_NAME

    run_dir = os.fspath(path)
    if not os.path.isdir(run_dir) or os.path.exists(os.path.join(run_dir, MODEL_NAME)):
        return
    try:
        with open(os.path.join(run_dir, rundir.CONFIG), encoding="utf-8") as f:
            train = json.load(f)["train"]
        eval_every, save_every = int(train["eval_every"]), int(train["save_every"])
        interval = float(train.get("eval_interval", 120.0))
    except (OSError, ValueError, KeyError, TypeError):
        return  # not a run directory: the model loader names the missing file
    found = checkpoint_steps(run_dir)
    # eval_every 0: evaluations on the clock, the first 30 s after the first step (charlm.trainer)
    when = f"step {eval_every}" if eval_every else f"{min(30.0, interval):g}s after the first step"
    head = (f"{run_dir} has no model yet: model.safetensors is written at the first evaluation ({when}) "
            "or when training ends. ")
    if found:
        last = list(found)[-1]
        raise UsageError(head + f"Sample a checkpoint meanwhile: load({run_dir!r}, checkpoint={last}) "
                         f"(checkpoints at steps {_saved_steps(found)})",
                         cli=head + f"Sample a checkpoint meanwhile: charlm sample {run_dir} --checkpoint {last} "
                             f"(checkpoints at steps {_saved_steps(found)})")
    if save_every and (not eval_every or save_every < eval_every):
        raise UsageError(head + f"No checkpoint either: the first is saved at step {save_every}; then sample it "
                         f"with --checkpoint {save_every}")
    raise UsageError(head + "No checkpoint either: the first is saved with the first evaluation")


def load_checkpoint(run_dir, which, *, device: str = "cpu") -> Model:
    """The weights of one resume checkpoint: ``which`` is a step of RUN_DIR's checkpoints or a file path."""
    import os
    from pathlib import Path

    from .backends import resolve_device
    from .checkpoint import _read_checkpoint
    from .generate import Model
    from .model import CharLM
    from .tokenizer import CharTokenizer

    text = str(which)
    if os.path.isfile(text):
        path = Path(text)
    elif text.isdigit():
        base = os.fspath(run_dir)
        if not os.path.isdir(base):
            base = os.path.dirname(os.path.abspath(base))
        found = checkpoint_steps(base)
        if int(text) not in found:
            raise UsageError(f"{base} has no checkpoint at step {int(text)}: steps kept are "
                             f"{_saved_steps(found)} (--keep N keeps more)")
        path = found[int(text)]
    else:
        raise UsageError(f"checkpoint {text!r} is neither a step number nor a checkpoint file")
    step, tensors, meta = _read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        tok = CharTokenizer.from_dict(meta["tokenizer"])
        flat = tensors["model.flat"]
    except (UsageError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: not a usable charlm training checkpoint ({e}); use another file") from None
    model = CharLM(config, seed=0, device=resolve_device(device))
    if flat.shape != (model.size,) or len(tok) != config.vocab_size:
        raise CheckpointError(f"{path}: the weights or the vocabulary do not match its model config; "
                              "the file is corrupt: use another checkpoint")
    model.flat[:] = model.backend.to_device(flat.astype(model.dtype))
    return Model(model, tok, meta={"model_config": meta["model_config"], "tokenizer": meta["tokenizer"],
                                   "extra": {"step": step}, "checkpoint": str(path)})
