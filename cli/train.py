"""`charlm train`: flags (and an optional TOML file) -> charlm.train.train()."""

from __future__ import annotations

import json
import os
import shlex
import sys

import click

from charlm import rundir
from charlm.config import LN2, ModelConfig, TrainConfig

from .output import notice

_T = TrainConfig()
_M = ModelConfig(vocab_size=1)
# the model size is chosen for the budget on this machine (charlm.autosize) unless one of these is given
_AUTO = "chosen for the budget when --layers and --hidden are both omitted, else"


def _duration(ctx, param, value, name=None):
    if value is None:
        return None
    from charlm.runlog import parse_duration

    try:
        return parse_duration(value)
    except ValueError:
        name = name or (param.opts[0] if param is not None else "duration")
        raise click.UsageError(f"{name}: {value!r} is not a duration: use e.g. 90s, 10m, 2h or 1h30m") from None


def _size(ctx, param, value):
    if value is None or isinstance(value, int):
        return value
    from charlm.boundedread import parse_size

    return parse_size(value)


def _opt(*decls, help, default=None, **kw):
    """An option whose default lives in the config dataclass (shown in --help, applied by the library)."""
    if default is not None:
        help = f"{help}  [default: {default}]"
    return click.option(*decls, default=None, help=help, **kw)


OPTIONS = [
    # model
    _opt("--cell", type=click.Choice(["rnn", "lstm", "gru"]), help="Recurrent cell.",
         default=f"gru when --layers and --hidden are both omitted; else {_M.cell}"),
    _opt("--layers", type=int, help="Stacked recurrent layers.", default=f"{_AUTO} {_M.layers}"),
    _opt("--hidden", type=int, help="Hidden units per layer.", default=f"{_AUTO} {_M.hidden}"),
    _opt("--embed", type=int, help="Embedding size (0 = one-hot input).", default=_M.embed),
    _opt("--dropout", type=float, help="Dropout between recurrent layers.",
         default=f"chosen with the size when that is chosen, else {_M.dropout}"),
    _opt("--nonlinearity", type=click.Choice(["tanh", "relu"]), help="rnn cell activation.", default="tanh"),
    # data
    _opt("--seq-len", type=int, help="Window length T for truncated BPTT.", default=_T.seq_len),
    _opt("--batch-size", type=int, help="Parallel streams B.", default=_T.batch_size),
    _opt("--val-frac", type=float, help="Fraction held out for validation (at the end).", default=_T.val_frac),
    _opt("--val-split", type=click.Choice(["tail", "each"]),
         help="Where --val-frac/--test-frac come from: the tail of the concatenated corpus, or the tail of "
              "each source (file) in the same proportion.", default=_T.val_split),
    _opt("--test-frac", type=float, help="Fraction held out for testing (after validation).", default=0.0),
    _opt("--level", type=click.Choice(["char", "byte"]), help="Tokenize characters or UTF-8 bytes.", default="char"),
    _opt("--normalize", type=click.Choice(["NFC"]), help="Unicode-normalize the text first."),
    _opt("--vocab-cap", type=int, default=0,
         help="Most symbols kept from the corpus (0 = no cap); --unknown replace adds one unknown id."),
    _opt("--unknown", type=click.Choice(["error", "replace", "skip", "extend"]),
         help="Symbols outside the vocabulary (beyond --vocab-cap, or new to an --init-from model): an error, "
              "one unknown id (replace), dropped (skip) or new ids with new embedding and head rows (extend); "
              "skip and extend need --init-from.", default="error"),
    _opt("--encoding", help="Text encoding of the corpus files.", default="utf-8"),
    _opt("--errors", type=click.Choice(["strict", "replace"]), help="Invalid bytes: fail or replace.",
         default="strict"),
    _opt("--glob", help="File pattern inside corpus directories (e.g. '*.txt')."),
    _opt("--max-bytes", callback=_size, metavar="SIZE",
         help="Most bytes read from stdin or a stream (FIFO, pipe, device), e.g. 2G.", default="1G"),
    _opt("--shuffle-offsets/--no-shuffle-offsets", help="Shift stream offsets randomly each epoch.",
         default=False),
    # optimization
    _opt("--optimizer", type=click.Choice(["adam", "adamw", "sgd", "rmsprop"]), help="Optimizer.",
         default=f"adamw with a chosen size that repeats the data over 4 times, else {_T.optimizer}"),
    _opt("--lr", type=float, help="Learning rate.",
         default=f"5e-3 for a chosen one-layer size, else {_T.lr}"),
    _opt("--weight-decay", type=float, help="Weight decay (L2 for adam/sgd/rmsprop, decoupled for adamw).",
         default=f"0.1 with that adamw, else {_T.weight_decay}"),
    _opt("--momentum", type=float, help="Momentum for sgd and rmsprop.", default=_T.momentum),
    _opt("--clip-norm", type=float, help="Clip the global gradient norm (0 = off).", default=_T.clip_norm),
    _opt("--clip-value", type=float, help="Clip each gradient entry (0 = off).", default=_T.clip_value),
    _opt("--lr-schedule", type=click.Choice(["constant", "cosine", "step"]), help="Learning-rate schedule.",
         default=_T.lr_schedule),
    _opt("--warmup-steps", type=int, help="Linear warmup steps.", default=_T.warmup_steps),
    _opt("--lr-step-size", type=int, help="step schedule: decay every N steps.", default=_T.lr_step_size),
    _opt("--lr-gamma", type=float, help="step schedule: decay factor.", default=_T.lr_gamma),
    _opt("--lr-min", type=float, help="cosine schedule: final learning rate.", default=_T.lr_min),
    # budget
    _opt("--max-steps", type=int, help="Stop at this optimizer step (counts the whole run)."),
    _opt("--max-epochs", type=float, help="Stop at this epoch (counts the whole run)."),
    _opt("--max-time", callback=_duration,
         help="Stop after this much wall time (90s, 10m, 2h), final evaluation included."),
    # run
    _opt("--init-from", type=click.Path(exists=True), metavar="RUN_DIR|MODEL",
         help="Fine-tune: start from this model's weights, config and vocabulary (optimizer and schedule "
              "fresh); new symbols follow --unknown."),
    _opt("--out", type=click.Path(file_okay=False), help="Run directory (default: a new one under ./runs)."),
    _opt("--seed", type=int, help="Seed for weights, data order and dropout.", default=_T.seed),
    _opt("--threads", type=int, help="CPU threads: 0 = all cores, fewer while other processes keep them busy; "
         "N pins N.", default=0),
    _opt("--device", type=click.Choice(["cpu", "cuda", "auto"]), help="Where the kernels run.", default="cpu"),
    _opt("--eval-interval", callback=_duration, default="2m",
         help="Evaluate and save a checkpoint this often (the first after 30s of training)."),
    _opt("--log-interval", callback=_duration, help="Print a progress line this often.", default="10s"),
    _opt("--eval-every", type=int, help="Evaluate every N steps instead of every --eval-interval."),
    _opt("--log-every", type=int, help="Log every N steps instead of every --log-interval."),
    _opt("--save-every", type=int, help="Also save a resume checkpoint every N steps."),
    _opt("--val-chars", type=int, default=f"{_T.val_chars:,}",
         help="Validation characters scored per evaluation, a fixed subset (0 = the whole split)."),
    _opt("--sample-every", type=int, help="Print a short sample every N steps (0 = never).", default=0),
    _opt("--keep", type=int, help="Resume checkpoints to keep.", default=_T.keep),
    _opt("--patience", type=int, help="Stop after N evaluations without improvement (0 = off).", default=0),
]


def _with_options(fn):
    for opt in reversed(OPTIONS):
        fn = opt(fn)
    return fn


def load_toml(path: str) -> dict:
    """A TOML config: keys are the flags' names (dashes or underscores), values as on the command line."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise click.UsageError(f"--config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise click.UsageError(f"--config: {path} is not valid TOML: {e}") from None
    flat = {}
    for key, value in raw.items():
        if isinstance(value, dict):  # allow [model] / [train] tables
            flat.update({k.replace("-", "_"): v for k, v in value.items()})
        else:
            flat[key.replace("-", "_")] = value
    return flat


@click.command()
@click.argument("corpus", nargs=-1)
@_with_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file with the flags' names as keys (flags win).")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run in RUN_DIR.")
@click.option("--print-config", is_flag=True, help="Print the effective configuration as JSON and exit.")
@click.pass_context
def train(ctx, corpus, config_file, resume, print_config, **flags):
    """Train a character-level language model on CORPUS.

    CORPUS is one or more text files, a directory, '-' for stdin, or a named corpus
    (stdlib, hello, brackets, copy, ...). Stop at any time with Ctrl-C: a checkpoint is
    saved and `charlm train --resume RUN_DIR` continues exactly.
    """
    from charlm.train import train as run_train
    from charlm.trainsetup import TRAIN_KEYS, prepare_run

    options = load_toml(config_file) if config_file else {}
    known = TRAIN_KEYS | {p.name for p in ctx.command.params}
    unknown = sorted(set(options) - known)
    if unknown:
        raise click.UsageError(f"--config: unknown keys in {config_file}: {', '.join(unknown)}")
    for key in ("max_time", "eval_interval", "log_interval"):
        if key in options:
            options[key] = _duration(None, None, options[key], name=f"{key} in {config_file}")
    if "max_bytes" in options:
        options["max_bytes"] = _size(None, None, options["max_bytes"])
    options.update({k: v for k, v in flags.items() if v is not None})
    if print_config:
        from charlm.trainsetup import preview_choice

        spec = prepare_run(list(corpus), dict(options), resume=resume, notice=notice)
        preview_choice(spec, notice=notice)  # budget-aware size: shows what training would choose
        # every model field, as "train" lists every training field; the vocabulary size comes from the corpus
        if spec.model is not None:  # the size choice read the corpus
            model = spec.model.to_dict()
        else:
            model = ModelConfig(vocab_size=1, **spec.model_options).to_dict()
            model["vocab_size"] = spec.source.config.vocab_size if spec.source is not None else None
        conf = {"run_dir": spec.run_dir, "corpus": spec.data.to_dict(), "model": model, "train": spec.train.to_dict()}
        if spec.source is not None:
            conf["init_from"] = spec.source.path
        if spec.choice is not None:
            conf["autosize"] = spec.choice.to_dict()
        click.echo(json.dumps(conf, indent=2))
        return
    result = run_train(corpus, options, resume=resume, notice=notice)
    if result.best_val is not None:
        notice(f"best validation loss {result.best_val:.4f} nats/char ({result.best_val / LN2:.3f} "
               f"bpc); model in {os.path.join(result.run_dir, rundir.MODEL)}")
    if os.path.exists(os.path.join(result.run_dir, rundir.MODEL)):
        notice(f"sample it with: charlm sample {shlex.quote(str(result.run_dir))}")
    if result.best_val is not None:
        from charlm.autosize import verdict

        notice(verdict(result.best_val, result.ended_by))
    if result.exit_code:
        sys.exit(result.exit_code)
