"""Budget-aware model size: pick layers x hidden (dropout, learning rate) for the budget on this machine.

When a new run gives neither ``--layers`` nor ``--hidden``, :func:`choose` picks the model
from a small table of candidates (:data:`SIZES`) for the characters of training the budget
allows. The rule, in full:

1. **Characters the budget allows, per candidate.** ``--max-steps N``: ``N x B x T``;
   ``--max-epochs E``: ``E x training characters``; ``--max-time S``: chars/s x usable seconds,
   where chars/s is *measured*: a short calibration trains the smallest candidate for a few
   real steps on this machine (:func:`measure_reference`, its kernels are the ones training
   will use, so their compilation is not wasted), then scales that speed to every other
   candidate by its multiply-adds per character (:func:`macs_per_char`, plus a fixed
   per-character overhead). Usable seconds are the budget minus the calibration minus a share
   for evaluation and checkpoints (:data:`TRAIN_SHARE`). With several budgets, the smallest
   count wins, as it does in training.
2. **Repeated text is worth less.** The first pass over the training split counts in full; ``R``
   more passes count as ``U x R* x (1 - exp(-R / R*))`` characters (``U`` the split's length,
   ``R*`` = :data:`REPEAT_SCALE` passes), the data-constrained form of Muennighoff et al. 2023,
   so a small corpus caps the model at about ``U x (1 + R*) / CHARS_PER_PARAM`` parameters.
3. **The largest candidate that gets enough.** A candidate qualifies when its effective
   characters are at least :data:`CHARS_PER_PARAM` per parameter (:data:`DEPTH_FACTOR` times that
   for two layers, which learn more slowly early on); the largest qualifying
   candidate (by parameters) wins, the smallest when none does.
4. **Dropout where data repeats.** Between-layer dropout is 0 for one layer, else 0 under one
   pass over the data, 0.1 up to :data:`DROPOUT_EPOCHS` passes, 0.2 beyond.
5. **Learning rate**: :data:`LR_ONE_LAYER` for one layer, the TrainConfig default (3e-3) for
   two (Adam, cosine-decayed over the budget either way).
6. **Weight decay where data repeats most**: beyond :data:`DROPOUT_EPOCHS` passes (where dropout
   is 0.2), AdamW with decoupled weight decay :data:`WEIGHT_DECAY`; else plain Adam, no decay.
   ``--optimizer`` or ``--weight-decay`` given by the user turns this rule off (both together:
   the decay belongs to AdamW).

**The cell** is ``--cell`` when given, else :data:`CELL` (gru): in the measurements behind this
rule a gru 1x256 gave the best 3-minute result on a 2-core machine (1.78 bpc on stdlib), PyTorch's
gru 2x256 matched or beat its lstm 2x256 in 10 minutes, and charlm's GRU kernels are relatively
faster than its LSTM ones (bench/bench_train.py: 1.23-1.28x PyTorch against 0.94-1.03x).

Explicit flags always win: ``--cell`` chooses the cell of every candidate, and ``--dropout``,
``--lr``, ``--optimizer``, ``--weight-decay`` (or ``--batch-size``, ``--seq-len``) given by the
user are never replaced. A resumed run keeps the choice recorded in its ``config.json`` and
never re-chooses. The measured speed is
rounded to a *speed class* (steps of 2^(1/2), about 41 %) before it is used, so a machine gives
the same choice from run to run; only a machine whose speed sits on a class boundary (or whose
load changes a lot) can see two neighbouring choices.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from .config import GATES, LN2, ModelConfig, TrainConfig

CELL = "gru"                              # the cell when --cell is not given
# (layers, hidden), smallest first; the cell is --cell or CELL
SIZES = ((1, 128), (1, 256), (1, 384), (2, 256), (2, 384), (2, 512))
SIZE_KEYS = ("layers", "hidden")          # giving either turns the choice off
CHARS_PER_PARAM = 6.0                     # rule 3
# rule 3, two layers: 3 min of the README's first command on a 2-core Xeon (AVX-512), same corpus:
# gru 2x256 (8.1 chars/param, 440 steps) 2.020 bpc against gru 1x384 (7.9, 794 steps) 1.763 bpc
DEPTH_FACTOR = 2.0
REPEAT_SCALE = 8.0                        # rule 2: R*, in passes over the training split
DROPOUT_EPOCHS = 4.0                      # rule 4
LR_ONE_LAYER = 5e-3                       # rule 5 (gru 1x256, tiny-shakespeare, 400 steps: see README)
# rule 6: 10 min of tiny-shakespeare (bench_budget, gru 2x256 dropout 0.2, 18-19 passes), quiet 2-core
# AMD EPYC Zen 4, one run each: AdamW 0.1 1.4433 (2,777 steps) against Adam 1.4585 (3,021 steps) nats/char
WEIGHT_DECAY = 0.1
TRAIN_SHARE = 0.85                        # of the time budget left after calibration (rule 1)
OVERHEAD_MACS = 50_000                    # fixed per-character cost in multiply-add equivalents
CALIBRATION_SHAPE = (32, 64)              # (T, B) of the timed calibration steps
CALIBRATION_STEPS = 2                     # timed steps after one untimed (compile / warm-up) step
# A first-ever start calibrates on the NumPy backend on one thread (the kernels are still compiling):
# the compiled kernels on n threads are predicted as NUMPY_SPEEDUP * n ** THREAD_SCALING times faster.
# Measured (calibration shape, gru and lstm 1x128, quiet 2-core Xeon AVX-512): 2.56-2.59 on 2 threads;
# the compiled kernels scale 1.6-1.9x from 1 to 2 threads (trainsetup.set_threads).
NUMPY_SPEEDUP = 1.5
THREAD_SCALING = 0.8


@dataclass(frozen=True)
class Choice:
    """What was chosen and why (recorded as ``autosize`` in config.json)."""

    cell: str
    layers: int
    hidden: int
    dropout: float
    lr: float
    weight_decay: float          # > 0: AdamW with this decoupled decay (rule 6)
    budget: str                  # "3m", "2000 steps", "10 epochs"
    chars: int                   # characters of training the budget allows this model
    epochs: float                # passes over the training split those characters make
    chars_per_sec: float | None  # estimated for this model (time budgets only)
    speed_class: float | None    # log2 of the reference speed, in halves (time budgets only)
    calibration_seconds: float
    line: str

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def model_options(self) -> dict:
        return {"cell": self.cell, "layers": self.layers, "hidden": self.hidden, "dropout": self.dropout}

    @property
    def train_options(self) -> dict:
        if self.weight_decay > 0:
            return {"lr": self.lr, "optimizer": "adamw", "weight_decay": self.weight_decay}
        return {"lr": self.lr}


def wanted(explicit: set, options: dict) -> bool:
    """True when a new run leaves the model size to charlm."""
    return not (set(SIZE_KEYS) & explicit) and not options.get("init_from")


def macs_per_char(cell: str, layers: int, hidden: int, embed: int, vocab: int) -> int:
    """Multiply-adds per character of one forward pass (recurrent GEMMs + head)."""
    g, inp, total = GATES[cell], embed or vocab, 0
    for _ in range(layers):
        total += g * hidden * (inp + hidden)
        inp = hidden
    return total + hidden * vocab


def n_params(cell: str, layers: int, hidden: int, embed: int, vocab: int) -> int:
    g, inp, total = GATES[cell], embed or vocab, (vocab * embed if embed else 0)
    for _ in range(layers):
        total += g * hidden * (inp + hidden) + 2 * g * hidden
        inp = hidden
    return total + hidden * vocab + vocab


def effective_chars(chars: float, train_chars: int) -> float:
    """Rule 2: the first pass counts in full, repeats less and less (data-constrained scaling)."""
    u = float(max(1, train_chars))
    if chars <= u:
        return chars
    repeats = chars / u - 1.0
    return u + u * REPEAT_SCALE * (1.0 - math.exp(-repeats / REPEAT_SCALE))


def dropout_for(layers: int, epochs: float) -> float:
    if layers < 2 or epochs < 1.0:
        return 0.0
    return 0.1 if epochs <= DROPOUT_EPOCHS else 0.2


def weight_decay_for(layers: int, epochs: float) -> float:
    return WEIGHT_DECAY if layers > 1 and epochs > DROPOUT_EPOCHS else 0.0


def speed_class(chars_per_sec: float) -> float:
    """Round a speed to steps of 2^(1/2) (returned as log2, a multiple of 0.5)."""
    return round(2.0 * math.log2(max(1.0, chars_per_sec))) / 2.0


def measure_reference(cell: str, embed: int, vocab: int, device: str, threads: int = 0) -> float:
    """Characters per second of real training steps of the smallest candidate on this machine.

    One untimed step first (it compiles or loads the kernels training then reuses), then the
    best of CALIBRATION_STEPS timed forward+backward+clip+Adam steps on random ids. On the NumPy
    backend (a first-ever start, ``device="numpy"``) the compiled speed is predicted from it.
    """
    from .model import CharLM
    from .optim import Optimizer

    layers, hidden = SIZES[0]
    T, B = CALIBRATION_SHAPE
    model = CharLM(ModelConfig(vocab_size=vocab, cell=cell, layers=layers, hidden=hidden, embed=embed,
                               dropout=0.0), seed=0, device=device)
    opt = Optimizer(TrainConfig(), model)
    rng = np.random.default_rng(0)
    x = rng.integers(0, vocab, (T, B)).astype(np.int32)
    y = rng.integers(0, vocab, (T, B)).astype(np.int32)
    state = model.init_state(B)
    best = float("inf")
    with _one_blas_thread_on(device):  # as NUMPY_SPEEDUP was measured (and as the run's NumPy steps run)
        for i in range(CALIBRATION_STEPS + 1):
            t = time.perf_counter()
            model.train_step(x, y, state, None)
            opt.clip()
            opt.step(1e-3)
            if i:
                best = min(best, time.perf_counter() - t)
    if device == "numpy":  # predict the compiled kernels' speed on the run's threads (see NUMPY_SPEEDUP)
        from .trainsetup import planned_threads

        return T * B / best * NUMPY_SPEEDUP * planned_threads(threads) ** THREAD_SCALING
    return T * B / best


def _one_blas_thread_on(device: str):
    import contextlib

    if device != "numpy":
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def budget_text(cfg: TrainConfig) -> str:
    from .runlog import fmt_duration

    parts = []
    if cfg.max_time:
        parts.append(fmt_duration(cfg.max_time))
    if cfg.max_steps:
        parts.append(f"{cfg.max_steps:,} steps")
    if cfg.max_epochs:
        parts.append(f"{cfg.max_epochs:g} epochs")
    return " / ".join(parts) or "no budget"


def choose(cfg: TrainConfig, *, cell: str, embed: int, vocab: int, train_chars: int, device: str = "cpu",
           measure=None) -> Choice:
    """Apply the rule in the module docstring. ``measure(cell, embed, vocab, device)`` returns the
    reference chars/s (default :func:`measure_reference`); it is only called for a time budget."""
    chars_per_step = cfg.batch_size * cfg.seq_len
    ref_macs = macs_per_char(cell, *SIZES[0], embed, vocab) + OVERHEAD_MACS
    calib, klass, ref_cps = 0.0, None, None
    if cfg.max_time:
        t0 = time.perf_counter()
        measured = (measure or functools.partial(measure_reference, threads=cfg.threads))(cell, embed, vocab, device)
        calib = time.perf_counter() - t0
        klass = speed_class(measured)
        ref_cps = 2.0 ** klass
    usable = max(0.0, cfg.max_time - calib) * TRAIN_SHARE

    def allowed(layers: int, hidden: int) -> tuple[float, float | None]:
        counts, cps = [], None
        if cfg.max_steps:
            counts.append(cfg.max_steps * chars_per_step)
        if cfg.max_epochs:
            counts.append(cfg.max_epochs * train_chars)
        if cfg.max_time:
            cps = ref_cps * ref_macs / (macs_per_char(cell, layers, hidden, embed, vocab) + OVERHEAD_MACS)
            counts.append(cps * usable)
        return (min(counts) if counts else 0.0), cps

    pick = SIZES[0]
    for layers, hidden in sorted(SIZES, key=lambda s: n_params(cell, *s, embed, vocab)):
        chars, _ = allowed(layers, hidden)
        need = CHARS_PER_PARAM * (DEPTH_FACTOR if layers > 1 else 1.0) * n_params(cell, layers, hidden, embed, vocab)
        if effective_chars(chars, train_chars) >= need:
            pick = (layers, hidden)
    chars, cps = allowed(*pick)
    epochs = chars / max(1, train_chars)
    layers, hidden = pick
    dropout = dropout_for(layers, epochs)
    lr = LR_ONE_LAYER if layers == 1 else TrainConfig().lr
    budget = budget_text(cfg)
    where = " on this machine" if cfg.max_time else ""
    speed = f" at ~{_si(cps)} chars/s" if cps else ""
    line = (f"{budget}{where}: {cell} {layers}x{hidden}, ~{_si(chars)} characters of training{speed} "
            f"({epochs:.1f} epochs){_calibration_note(calib)}; pass --layers/--hidden to choose yourself")
    return Choice(cell, layers, hidden, dropout, lr, weight_decay_for(layers, epochs), budget, int(chars),
                  round(epochs, 3), None if cps is None else round(cps, 1), klass, round(calib, 3), line)


def _calibration_note(seconds: float) -> str:
    if seconds < 5.0:
        return ""
    return f"; measuring took {seconds:.0f}s of the budget (kernel compilation included)"


def _si(n: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.1f}{suffix}" if v < 10 else f"{v:.0f}{suffix}"
    return f"{n:.0f}"


# what a validation loss means to someone reading the sample (bits per character, upper bounds)
VERDICTS = ((1.5, "good: the model writes fluent text in the corpus's style"),
            (2.0, "fair: real words and structure, some garbled; {more} improves it"),
            (2.7, "early: word fragments and layout, little sense; give it {more}"),
            (float("inf"), "barely started: mostly noise; give it {more}"))
# what to give more of, by the budget that ended the run (TrainResult.ended_by)
MORE = {"max_time": "a longer --max-time", "max_steps": "more --max-steps", "max_epochs": "more --max-epochs"}


def verdict(val_nats: float, ended_by: str | None = "max_time") -> str:
    """One line for the end of training: ``val 1.85 bpc: fair: ...``, the advice worded for the budget
    that ended the run (``max_time``, ``max_steps``, ``max_epochs``; anything else: a bigger budget)."""
    bpc = val_nats / LN2
    text = next(v for limit, v in VERDICTS if bpc <= limit)
    return f"val {bpc:.2f} bpc: {text.format(more=MORE.get(ended_by, 'a bigger budget'))}"


def seconds_text(seconds: float) -> str:
    """A budget or a duration as the user would write it: '0.2s', '5s', '3m00s'."""
    from .runlog import fmt_duration

    return f"{seconds:.2g}s" if seconds < 10 else fmt_duration(seconds)


def used_up(max_time: float, elapsed: float, calibration: float, run_dir) -> str:
    """The error for a fresh run whose --max-time ended before its first training step."""
    what = ("measuring this machine's speed took {:.1f}s (kernel compilation included)" if calibration >= 0.5 * elapsed
            else "reading the corpus and setting up took {:.1f}s").format(elapsed)
    again = (" or run the same command again: the kernels it compiled are cached now" if calibration >= 5.0
             else "")
    bigger = "30s" if 3.0 * elapsed <= 30.0 else f"{max(1, round(3.0 * elapsed / 60.0))}m"
    return (f"--max-time {seconds_text(max_time)} was used up before the first training step: {what}, so "
            f"nothing was trained and no run was left in {run_dir}; give a bigger --max-time "
            f"(e.g. --max-time {bigger}){again}")
