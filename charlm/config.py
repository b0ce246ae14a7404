"""Typed, frozen configuration for models, training and sampling.

Each dataclass validates its own values (``UsageError`` with the fix in the
message) and converts to and from plain dicts, so a config can be saved as JSON
or TOML beside a run and read back unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field, fields

from .errors import UsageError

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
LN2 = math.log(2.0)           # nats per bit: bits per character = nats / LN2
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "step")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise UsageError(msg)


_KINDS = {  # annotation (a string under postponed evaluation) -> (accepted types, what to write)
    "int": ((numbers.Integral,), "a whole number"),
    "float": ((numbers.Real,), "a number"),
    "str": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
    "str | None": ((str, type(None)), "a string"),
}


def _check_types(obj) -> None:
    """``UsageError`` naming the first field whose value has the wrong type (TOML, config.json, library
    calls): ``seq_len = 16.5`` or ``lr = "0.1"`` must fail here, before any work, not after training."""
    for f in fields(obj):
        kind = _KINDS.get(f.type) if isinstance(f.type, str) else None
        if kind is None:
            continue
        v = getattr(obj, f.name)
        if not isinstance(v, kind[0]) or (isinstance(v, bool) and f.type != "bool"):
            raise UsageError(f"{f.name.replace('_', '-')} must be {kind[1]}, got {v!r} ({type(v).__name__})")


class _DictMixin:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        _check(not unknown, f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DataConfig(_DictMixin):
    """Where the text comes from and how it becomes ids."""

    sources: tuple[str, ...] = ()
    encoding: str = "utf-8"
    errors: str = "strict"        # strict | replace
    glob: str | None = None       # file pattern inside directories
    level: str = "char"           # char | byte
    normalize: str | None = None  # None | NFC
    vocab_cap: int = 0            # 0 = no cap
    unknown: str = "error"        # beyond the cap / new to an --init-from model: error | replace | skip | extend
    max_bytes: int = 0            # most bytes read from stdin or a stream (FIFO, pipe, device); 0 = 1 GiB

    def __post_init__(self):
        object.__setattr__(self, "sources", tuple(self.sources))
        _check_types(self)
        _check(isinstance(self.max_bytes, int) and self.max_bytes >= 0, "--max-bytes must be a size >= 0")
        _check(self.errors in ("strict", "replace"), "--errors must be strict or replace")
        _check(self.level in ("char", "byte"), "--level must be char or byte")
        _check(self.normalize in (None, "NFC"), "--normalize must be NFC (or omitted)")
        _check(self.vocab_cap >= 0, "--vocab-cap must be >= 0 (0 = no cap)")
        _check(not (self.vocab_cap and self.level == "byte"),
               "--vocab-cap does not apply to --level byte: a byte vocabulary is always the 256 byte values")
        _check(self.unknown in ("error", "replace", "skip", "extend"),
               "--unknown must be error, replace, skip or extend")


@dataclass(frozen=True)
class ModelConfig(_DictMixin):
    """Shape of a character LM: embedding -> L recurrent layers -> linear head."""

    vocab_size: int
    cell: str = "lstm"            # rnn | lstm | gru
    layers: int = 2
    hidden: int = 384
    embed: int = 64               # 0 = one-hot input (E = V)
    dropout: float = 0.1          # between recurrent layers, training only
    nonlinearity: str = "tanh"    # rnn only: tanh | relu

    def __post_init__(self):
        _check_types(self)
        _check(self.cell in CELLS, f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        _check(isinstance(self.vocab_size, int) and self.vocab_size >= 1, "vocab_size must be >= 1")
        _check(isinstance(self.layers, int) and self.layers >= 1, "--layers must be a positive integer")
        _check(isinstance(self.hidden, int) and self.hidden >= 1, "--hidden must be a positive integer")
        _check(isinstance(self.embed, int) and self.embed >= 0, "--embed must be >= 0 (0 means one-hot input)")
        _check(0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)")
        _check(self.nonlinearity in ("tanh", "relu"), "--nonlinearity must be tanh or relu")

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def input_size(self) -> int:
        """Width of the first recurrent layer's input: E, or V in one-hot mode."""
        return self.embed if self.embed > 0 else self.vocab_size


@dataclass(frozen=True)
class TrainConfig(_DictMixin):
    """Everything that decides how a run trains (not what the model is)."""

    seq_len: int = 100
    batch_size: int = 64
    val_frac: float = 0.1
    test_frac: float = 0.0        # held out after validation, never trained or evaluated on while training
    val_split: str = "tail"       # tail: the end of the concatenated corpus | each: the end of every source
    shuffle_offsets: bool = False
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    momentum: float = 0.9         # sgd momentum / rmsprop momentum
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    clip_norm: float = 5.0        # 0 = off
    clip_value: float = 0.0       # 0 = off
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    lr_step_size: int = 1000      # step schedule: decay every N steps
    lr_gamma: float = 0.5         # step schedule: multiply by gamma
    lr_min: float = 0.0           # cosine floor
    max_steps: int = 0            # 0 = no limit
    max_epochs: float = 0.0       # 0 = no limit
    max_time: float = 0.0         # seconds, 0 = no limit
    eval_every: int = 0           # steps; 0 = on the time cadence below
    log_every: int = 0            # steps; 0 = on the time cadence below
    save_every: int = 0           # steps; 0 = with every evaluation only
    eval_interval: float = 120.0  # seconds between evaluations (+ checkpoints) when eval_every is 0; the first at 30 s
    log_interval: float = 10.0    # seconds between progress lines when log_every is 0
    val_chars: int = 50_000       # validation characters scored per evaluation (a fixed subset); 0 = the whole split
    sample_every: int = 0
    keep: int = 2
    patience: int = 0             # evaluations without improvement before stopping; 0 = off
    seed: int = 1337
    threads: int = 0              # 0 = all cores
    device: str = "cpu"

    def __post_init__(self):
        _check_types(self)
        _check(self.seq_len >= 1, "--seq-len must be >= 1")
        _check(self.batch_size >= 1, "--batch-size must be >= 1")
        _check(0.0 <= self.val_frac < 1.0, "--val-frac must be in [0, 1)")
        _check(self.val_split in ("tail", "each"), "--val-split must be tail or each")
        _check(0.0 <= self.test_frac < 1.0 and self.val_frac + self.test_frac < 1.0,
               "--test-frac must be in [0, 1) and leave room for training (--val-frac + --test-frac < 1)")
        _check(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}: choose {', '.join(OPTIMIZERS)}")
        _check(self.lr > 0, "--lr must be > 0")
        _check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        _check(0.0 <= self.momentum < 1.0, "--momentum must be in [0, 1)")
        _check(self.clip_norm >= 0 and self.clip_value >= 0, "--clip-norm and --clip-value must be >= 0 (0 = off)")
        _check(self.lr_schedule in SCHEDULES,
               f"unknown --lr-schedule {self.lr_schedule!r}: choose {', '.join(SCHEDULES)}")
        _check(self.warmup_steps >= 0, "--warmup-steps must be >= 0")
        _check(self.lr_step_size >= 1 and self.lr_gamma > 0, "--lr-step-size must be >= 1 and --lr-gamma > 0")
        _check(self.max_steps >= 0 and self.max_epochs >= 0 and self.max_time >= 0, "budgets must be >= 0")
        _check(self.eval_every >= 0 and self.log_every >= 0 and self.save_every >= 0,
               "--eval-every, --log-every and --save-every must be >= 0 (0 = on the time cadence)")
        _check(self.eval_interval > 0 and self.log_interval > 0, "--eval-interval and --log-interval must be > 0")
        _check(self.val_chars >= 0, "--val-chars must be >= 0 (0 = the whole validation split)")
        _check(self.sample_every >= 0 and self.keep >= 1 and self.patience >= 0,
               "--sample-every and --patience must be >= 0, --keep >= 1")
        _check(self.threads >= 0, "--threads must be >= 0")
        _check(self.device in ("cpu", "cuda", "auto"), "--device must be cpu, cuda or auto")


@dataclass(frozen=True)
class SampleConfig(_DictMixin):
    """How to draw text from a model."""

    length: int = 500
    temperature: float = 1.0      # 0 = argmax
    top_k: int = 0                # 0 = off
    top_p: float = 1.0            # 1 = off
    seed: int | None = None
    num_samples: int = 1
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        _check(self.length >= 0, "--length must be >= 0")
        _check(self.temperature >= 0, "--temperature must be >= 0 (0 = always the most likely character)")
        _check(self.top_k >= 0, "--top-k must be >= 0 (0 = off)")
        _check(0.0 < self.top_p <= 1.0, "--top-p must be in (0, 1]")
        _check(self.num_samples >= 1, "--num-samples must be >= 1")
