"""What a model is and how it was trained: a Keras-style layer table and a training summary.

Parameter counts (``recurrent_params``), per gate block of H units on an input of width I:
    weights  G * H * (I + H)
    biases   PyTorch: two vectors (b_ih and b_hh), 2 * G * H  -- what charlm stores and trains
             Keras:   one vector, G * H -- except GRU with ``reset_after=True`` (the TF2 default and the
                      variant PyTorch's GRU computes), which also has two, 2 * G * H
so a 50-unit layer on 50 inputs has: SimpleRNN 5,050 (Keras) / 5,100 (PyTorch); LSTM 20,200 / 20,400;
GRU 15,150 (Keras, reset_after=False) / 15,300 (Keras reset_after=True, and PyTorch).
``keras=True`` counts what Keras prints for the equivalent model: GRU layers as reset_after=True.

The training summary reads the model file's metadata ``extra`` (written by the trainer, or by
``charlm import``) and, when present, ``RUN_DIR/metrics.jsonl`` (see ``charlm.runlog``) and the
header of the run's newest resume checkpoint (its step, epoch and wall time).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import rundir
from .config import GATES, LN2, ModelConfig
from .errors import UsageError

CELL_NAMES = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


# ---------------------------------------------------------------- parameter counts


def embedding_params(vocab_size: int, dim: int) -> int:
    """An embedding table (V, E)."""
    return vocab_size * dim


def dense_params(inputs: int, units: int) -> int:
    """A dense layer: weight (units, inputs) and bias (units,)."""
    return inputs * units + units


def recurrent_params(cell: str, input_size: int, hidden: int, *, keras: bool = False,
                     reset_after: bool = True) -> int:
    """One recurrent layer of ``hidden`` units on inputs of width ``input_size`` (see the module docstring)."""
    if cell not in GATES:
        raise UsageError(f"unknown cell {cell!r}: choose one of {', '.join(GATES)}")
    gh = GATES[cell] * hidden
    biases = 2 if not keras or (cell == "gru" and reset_after) else 1
    return gh * (input_size + hidden) + biases * gh


@dataclass(frozen=True)
class Layer:
    name: str                 # "Embedding", "LSTM (layer 0)", "Dropout", "Dense (head)", ...
    shape: tuple              # output shape, e.g. ("seq", "batch", 256)
    params: int


def layers(config: ModelConfig, *, keras: bool = False, reset_after: bool = True) -> list[Layer]:
    """The layers of a CharLM in order, with output shapes (time-major) and parameter counts."""
    V, E, H = config.vocab_size, config.embed, config.hidden
    out = []
    if E > 0:
        out.append(Layer("Embedding", ("seq", "batch", E), embedding_params(V, E)))
    else:
        out.append(Layer("One-hot input", ("seq", "batch", V), 0))
    name = "SimpleRNN" if keras and config.cell == "rnn" else config.cell.upper()
    for k in range(config.layers):
        inp = config.input_size if k == 0 else H
        out.append(Layer(f"{name} (layer {k})", ("seq", "batch", H),
                         recurrent_params(config.cell, inp, H, keras=keras, reset_after=reset_after)))
        if config.dropout > 0 and k < config.layers - 1:
            out.append(Layer(f"Dropout ({config.dropout:g})", ("seq", "batch", H), 0))
    out.append(Layer("Dense (head)", ("seq", "batch", V), dense_params(H, V)))
    return out


def seq_layers(config, *, keras: bool = False, reset_after: bool = True) -> list[Layer]:
    """The layers of a classifier / tagger (``charlm.models.sequence.SeqConfig``); Bidirectional
    layers count both directions (Keras: Bidirectional(LSTM(50)) on 50 inputs = 40,400)."""
    c = config
    E, H = c.embed, c.hidden
    per_step = c.task == "tag"
    out = [Layer("Embedding", ("seq", "batch", E), embedding_params(c.vocab_size, E)) if E > 0
           else Layer("One-hot input", ("seq", "batch", c.vocab_size), 0)]
    name = "SimpleRNN" if keras and c.cell == "rnn" else c.cell.upper()
    F = E if E > 0 else c.vocab_size
    for k in range(c.layers):
        if k > 0 and c.dropout > 0:
            out.append(Layer(f"Dropout ({c.dropout:g})", ("seq", "batch", F), 0))
        n = recurrent_params(c.cell, F, H, keras=keras, reset_after=reset_after)
        last = k == c.layers - 1 and not per_step and c.pool == "last"
        F = 2 * H if c.bidirectional else H
        shape = ("batch", F) if last else ("seq", "batch", F)
        out.append(Layer(f"Bidirectional({name}) (layer {k})" if c.bidirectional else f"{name} (layer {k})",
                         shape, 2 * n if c.bidirectional else n))
    if not per_step and c.pool == "mean":
        out.append(Layer("Mean pooling", ("batch", F), 0))
    lead = ("seq", "batch") if per_step else ("batch",)
    if c.dense > 0:
        out.append(Layer("Dense (fc, relu)", lead + (c.dense,), dense_params(F, c.dense)))
        F = c.dense
    units = 1 if c.head == "sigmoid" else c.num_labels
    out.append(Layer(f"Dense (head, {c.head})", lead + (units,), dense_params(F, units)))
    return out


def model_summary(config: ModelConfig, *, keras: bool = False, reset_after: bool = True) -> dict:
    """{"layers": [{"name", "shape", "params"}], "total_params", "counting", "config"}."""
    table = layers(config, keras=keras, reset_after=reset_after)
    return {"layers": [{**asdict(layer), "shape": list(layer.shape)} for layer in table],
            "total_params": sum(layer.params for layer in table),
            "counting": "keras" if keras else "pytorch", "reset_after": reset_after,
            "config": config.to_dict()}


# ---------------------------------------------------------------- training summary


def read_metrics(run_dir) -> list[dict] | None:
    """The records of RUN_DIR/metrics.jsonl (unreadable lines skipped), or None if there is no such file."""
    path = os.path.join(os.fspath(run_dir), rundir.METRICS)
    if err := rundir.special_error(path):   # a FIFO would block, /dev/zero never end
        raise err
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}; check its permissions") from None
    records = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(rec, dict) and _num(rec.get("step")) is not None:
            records.append(rec)
    return records


MAX_RECORD_VALUE = 1e15   # a step count, a loss or a wall time beyond this is a damaged line, not a record


def _num(x):
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and abs(x) < MAX_RECORD_VALUE
    return x if ok else None


def _epochs_at(steps, points) -> float | None:
    """Epochs done after ``steps`` steps, from any known (step, epoch) pair (epochs grow linearly)."""
    for step, epoch in points:
        if step is not None and epoch is not None and step == steps:
            return epoch
    for step, epoch in points:
        if step and epoch:
            return steps * epoch / step
    return None


def training_summary(config: ModelConfig, extra: dict, metrics: list[dict] | None,
                     state: dict | None = None) -> dict:
    """Steps, epochs, characters seen, wall time, best validation loss, ... of a run.

    Sources: the model file's metadata ``extra``, the records of metrics.jsonl and ``state``, the
    metadata of the run's newest resume checkpoint (``checkpoint_state``): the step count is the
    furthest any of them reached, and epochs are those of that step (not of the last log line).
    ``last_train_loss`` is the mean of the last train line, logged at ``last_train_step``.
    Keys are always present; a value is None when no source knows it.
    """
    extra = extra if isinstance(extra, dict) else {}
    state = state if isinstance(state, dict) else {}
    metrics = metrics or []
    train = [r for r in metrics if _num(r.get("train_loss")) is not None]
    evals = [r for r in metrics if _num(r.get("val_loss")) is not None]
    model_step = _num(extra.get("step"))
    known = [model_step, _num(state.get("step"))] + [_num(r["step"]) for r in metrics]
    steps = max([s for s in known if s is not None], default=None)
    chars = _num(extra.get("chars_seen"))
    if chars is not None and model_step and steps and steps > model_step:
        chars = round(chars * steps / model_step)   # the run went on after the saved model
    wall = max([t for t in [_num(extra.get("train_seconds")), _num(state.get("elapsed"))]
                + [_num(r.get("elapsed")) for r in metrics] if t is not None], default=None)
    best = min(evals, key=lambda r: r["val_loss"]) if evals else None
    best_loss = best["val_loss"] if best else _num(extra.get("val_loss"))
    last = train[-1] if train else None
    points = [(_num(state.get("step")), _num(state.get("epoch"))), (model_step, _num(extra.get("epoch")))]
    points += [(_num(r["step"]), _num(r.get("epoch"))) for r in reversed(metrics)]
    return {
        "cell": config.cell,
        "vocab_size": config.vocab_size,
        "steps": steps,
        "model_step": model_step,
        "epochs": None if steps is None else _epochs_at(steps, points),
        "chars_seen": chars,
        "wall_seconds": wall,
        "best_val_loss": best_loss,
        "best_val_bpc": None if best_loss is None else best_loss / LN2,
        "best_val_step": best["step"] if best else (model_step if best_loss is not None else None),
        "evaluations": len(evals),
        "last_train_loss": last["train_loss"] if last else None,
        "last_train_bpc": last["train_loss"] / LN2 if last else None,
        "last_train_step": last["step"] if last else None,
        "imported_from": extra.get("imported_from"),
        "fine_tuned_from": extra.get("fine_tuned_from") if isinstance(extra.get("fine_tuned_from"), dict) else None,
        "ranks": _num(extra.get("ranks")),
    }


def checkpoint_state(run_dir) -> dict | None:
    """The trainer's metadata (step, elapsed, epoch, ...) of RUN_DIR's newest readable resume
    checkpoint, read from its header only; None when there is none."""
    from . import tensorfile
    from .checkpoint import CHECKPOINT_FORMAT, _checker, _decode_fields, checkpoint_paths
    from .errors import CharlmError

    for path in checkpoint_paths(run_dir):
        if not path.exists():
            continue
        try:
            md, _ = tensorfile.read(path, missing_msg="", header_only=True, check_meta=_checker(CHECKPOINT_FORMAT))
            meta = _decode_fields(path, md, ("meta",))["meta"]
        except CharlmError:
            continue
        return {**meta, "step": int(md["step"])}
    return None


def run_dir_of(path) -> Path | None:
    """The run directory whose metrics belong to ``path`` (a RUN_DIR, or RUN_DIR/model.safetensors)."""
    from .checkpoint import MODEL_NAME

    p = Path(os.path.expanduser(os.fspath(path)))
    if p.is_dir():
        return p
    return p.parent if p.name == MODEL_NAME else None


def summarize(path, *, keras: bool = False, reset_after: bool = True) -> dict:
    """{"path", "model": model_summary, "training": training_summary} of a RUN_DIR or model file."""
    from .checkpoint import load_model, resolve_model_path
    from .errors import CheckpointError

    _, meta = load_model(path)
    if meta["model_config"].get("task") in ("classify", "tag"):
        from .models.sequence import SeqConfig

        try:
            config = SeqConfig.from_dict(meta["model_config"])
        except (UsageError, TypeError, ValueError) as e:
            raise CheckpointError(f"{resolve_model_path(path)}: bad model_config ({e}); "
                                  "the file is corrupt or foreign") from None
        table = seq_layers(config, keras=keras, reset_after=reset_after)
        extra = meta.get("extra") or {}
        return {"path": str(resolve_model_path(path)),
                "model": {"layers": [{**asdict(x), "shape": list(x.shape)} for x in table],
                          "total_params": sum(x.params for x in table),
                          "counting": "keras" if keras else "pytorch", "reset_after": reset_after,
                          "config": config.to_dict()},
                "training": {"labels": extra.get("labels"), "task_name": extra.get("task_name"),
                             "metrics": extra.get("metrics")}}
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (UsageError, TypeError) as e:
        raise CheckpointError(f"{resolve_model_path(path)}: bad model_config ({e}); "
                              "the file is corrupt or foreign") from None
    run_dir = run_dir_of(path)
    metrics = read_metrics(run_dir) if run_dir is not None else None
    state = checkpoint_state(run_dir) if run_dir is not None else None
    return {"path": str(resolve_model_path(path)), "model": model_summary(config, keras=keras, reset_after=reset_after),
            "training": training_summary(config, meta.get("extra", {}), metrics, state)}


# ---------------------------------------------------------------- text


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} bytes"


def _duration(seconds: float) -> str:
    from .runlog import fmt_duration

    return fmt_duration(seconds) if seconds >= 1 else f"{seconds:.2f}s"


def format_seq_summary(s: dict) -> str:
    m, t, c = s["model"], s["training"], s["model"]["config"]
    emb = f"embedding {c['embed']}" if c["embed"] else "one-hot input"
    what = "classifier" if c["task"] == "classify" else "tagger"
    if t["task_name"]:
        what += f" (--task {t['task_name']})"
    rule, bold = "_" * 66, "=" * 66
    lines = [f"Model: {s['path']}",
             f"{what}: {'bidirectional ' if c['bidirectional'] else ''}{c['cell']}, {c['layers']} x {c['hidden']} "
             f"hidden, {emb}, vocabulary {c['vocab_size']}, {c['num_labels']} labels",
             rule, f" {'Layer (type)':<34}{'Output Shape':<18}{'Param #':>12}", bold]
    for layer in m["layers"]:
        lines.append(f" {layer['name']:<34}{_shape(layer['shape']):<18}{layer['params']:>12,}")
    lines += [bold, f"Total params: {m['total_params']:,} ({_size(m['total_params'] * 4)} as float32)"]
    if m["counting"] == "keras":
        gru = f" (GRU as reset_after={m['reset_after']})" if c["cell"] == "gru" else ""
        lines.append(f"Counted as Keras does: one bias per gate block{gru}.")
    else:
        lines.append("Counted as PyTorch does (two biases per gate block); --keras counts one.")
    met = t.get("metrics") or {}
    if t.get("labels"):
        lines += [rule, f"  labels              {', '.join(map(str, t['labels']))}"]
    if met.get("accuracy") is not None:
        lines.append(f"  {met.get('split', 'val')} accuracy{'':<7}{met['accuracy']:.4f}  macro-F1 {met['macro_f1']:.4f}"
                     f"  after {met.get('steps', '?')} steps")
    return "\n".join(lines)


MAX_SHOWN = 200     # characters of a metadata string in `charlm info`'s text (the rest is summarized)
MAX_STRING = 4096   # characters of any string in a summary that `elide` bounds (PATH_MAX: paths stay whole)
MAX_ITEMS = 1000    # items of any list or dict in it
FULL_HINT = "charlm info --full shows all"


def _clip(text: str, limit: int = MAX_SHOWN) -> str:
    """A metadata string as info prints it: huge values (a multi-MB path) cut, with the count left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters; {FULL_HINT})"


def elide(obj, limit: int = MAX_STRING):
    """``obj`` (a summary: JSON values) with every string cut to ``limit`` characters and every list
    or dict to ``MAX_ITEMS`` items, each cut saying how much is left out: a model file's metadata may hold
    megabytes that ``charlm info`` must not print (``--full`` does). The text of ``format_summary``
    is bounded when it is given ``elide(summary, MAX_SHOWN)``."""
    if isinstance(obj, str):
        return _clip(obj, limit)
    if isinstance(obj, (list, tuple)):
        out = [elide(x, limit) for x in obj[:MAX_ITEMS]]
        return out + [f"... ({len(obj) - MAX_ITEMS:,} more items; {FULL_HINT})"] if len(obj) > MAX_ITEMS else out
    if isinstance(obj, dict):
        out = {elide(str(k), limit): elide(v, limit) for k, v in list(obj.items())[:MAX_ITEMS]}
        if len(obj) > MAX_ITEMS:
            out["..."] = f"{len(obj) - MAX_ITEMS:,} more entries; {FULL_HINT}"
        return out
    return obj


def format_summary(s: dict) -> str:
    """The human-readable ``charlm info`` text of a ``summarize`` result."""
    if "task" in s["model"]["config"]:
        return format_seq_summary(s)
    m, t, c = s["model"], s["training"], s["model"]["config"]
    emb = f"embedding {c['embed']}" if c["embed"] else "one-hot input"
    rule, bold = "_" * 66, "=" * 66
    lines = [f"Model: {s['path']}",
             f"{c['cell']}, {c['layers']} x {c['hidden']} hidden, {emb}, vocabulary {c['vocab_size']}",
             rule, f" {'Layer (type)':<28}{'Output Shape':<24}{'Param #':>12}", bold]
    for layer in m["layers"]:
        lines.append(f" {layer['name']:<28}{_shape(layer['shape']):<24}{layer['params']:>12,}")
    lines += [bold, f"Total params: {m['total_params']:,} ({_size(m['total_params'] * 4)} as float32)"]
    if m["counting"] == "keras":
        gru = " (GRU as reset_after=True: two)" if c["cell"] == "gru" else ""
        if c["cell"] == "gru" and not m.get("reset_after", True):
            gru = " (GRU as reset_after=False)"
        lines.append(f"Counted as Keras does: one bias per gate block{gru}.")
    else:
        lines.append("Counted as PyTorch does (two biases per gate block); --keras counts one.")
    lines += [rule, "Training"]

    def row(label, value):
        if value is not None:
            lines.append(f"  {label:<20}{value}")

    if t["imported_from"]:
        row("imported from", t["imported_from"])
    ft = t["fine_tuned_from"]
    if ft:
        at = f" (step {ft['step']:,})" if isinstance(ft.get("step"), int) else ""
        row("fine-tuned from", f"{ft.get('path')}{at}")
    row("cell", t["cell"])
    row("vocabulary size", t["vocab_size"])
    if t["steps"] is not None:
        saved = f" (model saved at step {t['model_step']:,})" if t["model_step"] not in (None, t["steps"]) else ""
        row("steps", f"{t['steps']:,}{saved}")
    row("epochs", None if t["epochs"] is None else f"{t['epochs']:.2f}")
    row("characters seen", None if t["chars_seen"] is None else f"{t['chars_seen']:,}")
    row("wall time", None if t["wall_seconds"] is None else _duration(t["wall_seconds"]))
    row("MPI ranks", None if not t.get("ranks") else f"{int(t['ranks'])} (data-parallel)")
    if t["last_train_loss"] is not None:
        at = f" at step {t['last_train_step']:,}" if t["last_train_step"] is not None else ""
        row("last train loss", f"{t['last_train_loss']:.4f} nats/char ({t['last_train_bpc']:.3f} bpc){at}")
    if t["best_val_loss"] is not None:
        at = f" at step {t['best_val_step']:,}" if t["best_val_step"] is not None else ""
        row("best val loss", f"{t['best_val_loss']:.4f} nats/char ({t['best_val_bpc']:.3f} bpc){at}")
    if t["steps"] is None and not t["imported_from"]:
        lines.append("  (no training record: no step in the file's metadata and no metrics.jsonl)")
    return "\n".join(lines)
