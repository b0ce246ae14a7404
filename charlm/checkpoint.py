"""charlm's storage layer: model weight files, resume checkpoints, and the run-directory lock.

Promise: nothing is ever lost (atomic writes, rotation, fallback to an older checkpoint), nothing is
ever unpickled (safetensors + JSON only), a corrupt or foreign file gives a clean ``CheckpointError``.

Model file ``RUN_DIR/model.safetensors``: tensors under PyTorch state-dict names (``embed.weight``,
``rnn.weight_ih_l0``, ..., ``head.bias``) so safetensors' PyTorch loader (``load_file``) reads it; metadata
``format="charlm-model"``, ``format_version``, JSON ``model_config``, ``tokenizer``, ``extra``, and
``checksum`` (defined in ``charlm.tensorfile``).

Resume checkpoint ``RUN_DIR/checkpoint.safetensors``: the trainer's arrays, metadata
``format="charlm-checkpoint"``, ``format_version``, ``step``, JSON ``meta`` (the trainer's dict), ``checksum``.
Before a new one is written, the previous one (if it verifies) is kept as
``RUN_DIR/checkpoint-<step:08d>.safetensors``; the oldest rotated ones are removed so that at most
``keep`` checkpoint files exist. Metadata goes through JSON: tuples come back as lists, numpy scalars and
arrays as numbers and lists, ints of any size (RNG states) exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import rundir, tensorfile
from .errors import CheckpointError, UsageError
from .safefile import RunLock, atomic_write_bytes, atomic_write_text, check_writable_dir, fsync_dir, os_error
from .tensorfile import FutureFormatError, corrupt

__all__ = [
    "FORMAT_VERSION", "MODEL_NAME", "CHECKPOINT_NAME", "CheckpointError", "FutureFormatError", "RunLock",
    "atomic_write_bytes", "atomic_write_text", "check_writable_dir", "resolve_model_path", "save_model",
    "load_model", "validate_state_dict", "save_checkpoint", "load_checkpoint", "checkpoint_paths",
]

FORMAT_VERSION = 1
MODEL_FORMAT = "charlm-model"
CHECKPOINT_FORMAT = "charlm-checkpoint"
MODEL_NAME = rundir.MODEL
CHECKPOINT_NAME = rundir.CHECKPOINT
_ROTATED_RE = rundir.ROTATED_RE
_KIND = {MODEL_FORMAT: "model file", CHECKPOINT_FORMAT: "resume checkpoint"}
_JSON_FIELDS = {MODEL_FORMAT: ("model_config", "tokenizer", "extra"), CHECKPOINT_FORMAT: ("meta",)}


def resolve_model_path(path) -> Path:
    """``RUN_DIR`` -> ``RUN_DIR/model.safetensors``; a file path is returned unchanged."""
    path = Path(os.path.expanduser(os.fspath(path)))
    return path / MODEL_NAME if path.is_dir() else path


def _checker(expected: str):
    """``check_meta`` for ``tensorfile.read``: our format, a version we understand, the JSON fields."""

    def check(path, md: dict[str, str]) -> None:
        fmt = md.get("format")
        if fmt not in _KIND:
            raise corrupt(path, f"not a charlm {_KIND[expected]} (no charlm metadata)",
                          "pass a file written by charlm")
        if fmt != expected:
            raise corrupt(path, f"this is a charlm {_KIND[fmt]}, not a {_KIND[expected]}",
                          "pass a RUN_DIR or a model.safetensors" if expected == MODEL_FORMAT
                          else "pass the run directory of a charlm train")
        version = md.get("format_version", "")
        if not (version.isascii() and version.isdigit() and len(version) < 10 and int(version) >= 1):
            raise corrupt(path, f"bad format_version {version[:20]!r}")
        if int(version) > FORMAT_VERSION:
            err = FutureFormatError(f"{path} was written by a newer charlm (format {int(version)}; this charlm "
                                    f"reads format {FORMAT_VERSION}); upgrade charlm")
            err.detail = f"written by a newer charlm (format {int(version)})"
            raise err
        if fmt == CHECKPOINT_FORMAT:
            step = md.get("step", "")
            if not (step.isascii() and step.isdigit() and len(step) < 19):
                raise corrupt(path, f"bad step {step[:20]!r}")
        for key in _JSON_FIELDS[fmt]:
            if key not in md:
                raise corrupt(path, f"metadata lacks {key!r}")

    return check


def _decode_fields(path, md: dict[str, str], keys) -> dict:
    out = {}
    for key in keys:
        try:
            value = json.loads(md[key])
        except (ValueError, RecursionError):
            raise corrupt(path, f"metadata {key!r} is not valid JSON") from None
        if not isinstance(value, dict):
            raise corrupt(path, f"metadata {key!r} is not a JSON object")
        out[key] = value
    return out


# ---------------------------------------------------------------- model files


def save_model(path, state_dict: dict[str, np.ndarray], *, model_config: dict, tokenizer: dict,
               extra: dict | None = None) -> Path:
    """Write a model file atomically (``path`` may be a RUN_DIR); returns the file's path."""
    path = resolve_model_path(path)
    metadata = {
        "format": MODEL_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_config": tensorfile.to_json(dict(model_config)),
        "tokenizer": tensorfile.to_json(dict(tokenizer)),
        "extra": tensorfile.to_json(dict(extra or {})),
    }
    atomic_write_bytes(path, tensorfile.encode(state_dict, metadata))
    return path


def load_model(path, *, max_bytes: int | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(state_dict, meta) of a model file or RUN_DIR; meta has model_config, tokenizer, extra, format_version.

    Every byte range is validated against the file size before any tensor is allocated, and the
    checksum is verified before returning. ``max_bytes`` refuses larger files up front.
    """
    path = resolve_model_path(path)
    missing = f"no such model file {path}; pass a RUN_DIR or a model.safetensors"
    md, tensors = tensorfile.read(path, missing_msg=missing, max_bytes=max_bytes,
                                  check_meta=_checker(MODEL_FORMAT))
    meta = _decode_fields(path, md, _JSON_FIELDS[MODEL_FORMAT])
    meta["format_version"] = int(md["format_version"])
    return tensors, meta


def validate_state_dict(state_dict: dict[str, np.ndarray], expected_shapes: dict[str, tuple]) -> None:
    """``CheckpointError`` naming the first tensor that is missing, unexpected, or of the wrong shape."""
    for name, shape in expected_shapes.items():
        if name not in state_dict:
            raise CheckpointError(f"model file lacks tensor {name!r} (expected shape {tuple(shape)}); "
                                  "the file does not match its model_config: retrain or use another file")
        got = tuple(np.shape(state_dict[name]))
        if got != tuple(shape):
            raise CheckpointError(f"tensor {name!r} has shape {got}, expected {tuple(shape)}; "
                                  "the file does not match its model_config: retrain or use another file")
    extra = sorted(set(state_dict) - set(expected_shapes))
    if extra:
        raise CheckpointError(f"model file has unexpected tensor {extra[0]!r}; "
                              "it was written for another model: retrain or use another file")


# ---------------------------------------------------------------- resume checkpoints


rotated_name = rundir.rotated_name


def checkpoint_paths(run_dir) -> list[Path]:
    """Candidate checkpoints, newest first: checkpoint.safetensors, then rotated ones by step descending."""
    run_dir = Path(run_dir)
    return [run_dir / CHECKPOINT_NAME] + [run_dir / rotated_name(s) for s in _rotated_steps(run_dir)]


def _rotated_steps(run_dir: Path) -> list[int]:
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    return sorted((int(m.group(1)) for m in map(_ROTATED_RE.fullmatch, names) if m), reverse=True)


def _read_checkpoint(path: Path):
    md, tensors = tensorfile.read(path, missing_msg=f"{path} is missing",
                                  check_meta=_checker(CHECKPOINT_FORMAT))
    return int(md["step"]), tensors, _decode_fields(path, md, ("meta",))["meta"]


def newest_meta(run_dir) -> dict | None:
    """The ``meta`` dict of the newest checkpoint in RUN_DIR whose header reads (no tensor data is read,
    the checksum is not verified: for diagnostics only), or None."""
    for path in checkpoint_paths(run_dir):
        try:
            md, _ = tensorfile.read(path, missing_msg="", header_only=True, check_meta=_checker(CHECKPOINT_FORMAT))
            return _decode_fields(path, md, ("meta",))["meta"]
        except (CheckpointError, UsageError):
            continue
    return None


def save_checkpoint(run_dir, tensors: dict[str, np.ndarray], meta: dict, *, step: int, keep: int = 2) -> Path:
    """Write ``RUN_DIR/checkpoint.safetensors`` atomically, rotating the previous one; returns its path."""
    if not isinstance(keep, int) or keep < 1:
        raise UsageError(f"keep must be a positive number of checkpoints (got {keep!r})")
    if not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    step = int(step)
    run_dir = Path(run_dir)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "step": str(step),
        "meta": tensorfile.to_json(dict(meta)),
    }
    data = tensorfile.encode(tensors, metadata)  # encode first: a bad tensor must not disturb the files
    cur = run_dir / CHECKPOINT_NAME
    if keep > 1 and os.path.lexists(cur):
        _rotate(cur, step)
    elif os.path.lexists(cur):
        _refuse_future(cur)
    atomic_write_bytes(cur, data)
    _prune(run_dir, keep)
    return cur


def _refuse_future(cur: Path) -> None:
    try:
        tensorfile.read(cur, missing_msg="", header_only=True, check_meta=_checker(CHECKPOINT_FORMAT))
    except FutureFormatError as exc:
        raise CheckpointError(f"{exc}; refusing to overwrite it (or choose another --out)") from None
    except (CheckpointError, UsageError):
        pass


def _rotate(cur: Path, step: int) -> None:
    """Keep the current checkpoint under its step's name if it verifies; a corrupt one is just replaced."""
    try:
        old_step, _, _ = _read_checkpoint(cur)
    except FutureFormatError as exc:
        raise CheckpointError(f"{exc}; refusing to overwrite it (or choose another --out)") from None
    except (CheckpointError, UsageError):
        return
    if old_step == step:
        return  # same step again: the new file supersedes it
    dst = cur.with_name(rotated_name(old_step))
    try:  # already rotated (a crash came between the rotation and the new write): nothing to do
        if os.path.samefile(cur, dst):
            return
    except OSError:
        pass
    tmp = cur.with_name(f".{dst.name}.link.tmp")
    try:  # a hard link keeps checkpoint.safetensors in place until the new one replaces it
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.link(cur, tmp)
        src = tmp
    except OSError:  # no hard links here: rename (load_checkpoint falls back if we die now)
        src = cur
    try:
        os.replace(src, dst)
    except OSError as exc:
        if src == tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise os_error(f"rotate {cur.name} to {dst.name} in", cur.parent, exc) from exc
    fsync_dir(cur.parent)


def _prune(run_dir: Path, keep: int) -> None:
    for s in _rotated_steps(run_dir)[keep - 1:]:
        try:
            os.unlink(run_dir / rotated_name(s))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise os_error("remove old checkpoint", run_dir / rotated_name(s), exc) from exc
    fsync_dir(run_dir)


def load_checkpoint(run_dir, *, notice=None) -> tuple[dict[str, np.ndarray], dict, Path]:
    """(tensors, meta, path) of the newest checkpoint in RUN_DIR that verifies.

    If checkpoint.safetensors is missing or corrupt, falls back to the rotated ones (newest first) and
    tells ``notice(str)`` which file was skipped and why. A file from a newer charlm stops the search.
    """
    run_dir = Path(run_dir)
    skipped = []
    for path in checkpoint_paths(run_dir):
        try:
            _, tensors, meta = _read_checkpoint(path)
        except FutureFormatError:
            raise
        except UsageError as exc:
            skipped.append(f"{path.name} is missing" if not os.path.lexists(path) else
                           f"{path.name} is unreadable ({exc})")
            continue
        except CheckpointError as exc:
            skipped.append(f"{path.name} is corrupt ({getattr(exc, 'detail', exc)})")
            continue
        if skipped and notice is not None:
            notice(f"{', '.join(skipped)}; resuming from {path.name}")
        return tensors, meta, path
    raise CheckpointError(f"no resumable checkpoint in {run_dir} ({'; '.join(skipped)}); "
                          "start a fresh run or pass another RUN_DIR")
