"""Training: stateful truncated BPTT with budgets, evaluation, checkpoints and signals.

Flow of one run: read the corpus -> tokenizer -> ids -> train/val split -> B
contiguous streams cut into windows of T -> for each optimizer step: forward and
backward over one window (hidden state carried from the previous window of the
same epoch, reset at epoch boundaries), clip, update, log; evaluate, save and
sample on their cadences; stop at the first budget reached, on SIGINT/SIGTERM,
on early stopping or on a non-finite loss.

Cadences: by default a progress line every ``log_interval`` seconds (10), an
evaluation and checkpoint 30 s after the first step (so there is a model to
sample early) and then every ``eval_interval`` seconds (120); ``--log-every`` /
``--eval-every`` / ``--save-every`` N switch to step cadences. An evaluation scores
a fixed subset of ``val_chars`` validation characters (B evenly spaced pieces),
``--val-chars 0`` the whole split.

Budget: ``--max-time`` is wall time of the whole run (corpus setup, compilation,
evaluations, checkpoints and the final evaluation included): training stops early
enough to leave room for the final evaluation, estimated from the last one.

Stopping: every stop (budget, signal, early stopping) ends the same way: the
checkpoint is written first, then model.safetensors if there is none, then the
final evaluation (skipped when the last step was just evaluated). The SIGINT/SIGTERM
handlers stay installed until that is done: a first signal stops training after
the current step; a signal during any evaluation aborts the evaluation (the
checkpoint is already on disk), so a second Ctrl-C skips the final evaluation.

Resume with a new budget: a budget given at --resume replaces the stored one. The
learning-rate schedule then follows the new budget (as if it had been planned from
the start) and reaches it smoothly: the offset between the rate in use and the new
schedule's rate fades out linearly over the first tenth of the remaining budget.

Everything a resumed run needs is derived from the step number or saved in the
checkpoint: the data cursor is (epoch, window) = divmod(step, windows per epoch);
dropout masks come from ``default_rng((seed, step))``; the checkpoint holds the
weights, the optimizer state and the carried hidden state. So a run stopped at
step k and resumed logs the same losses for steps k+1, k+2, ... as an
uninterrupted run (same machine and thread count).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shlex
import signal
import sys
import time
import types
from dataclasses import dataclass

import numpy as np

from . import checkpoint as ckpt
from . import distributed, rundir, warmup
from .config import DataConfig, ModelConfig, TrainConfig
from .errors import CharlmError, UsageError
from .optim import Optimizer, learning_rate
from .runlog import LN2, RunLog
from .trainsetup import RunSpec, build_data, prepare_run, set_threads


@dataclass
class TrainResult:
    run_dir: str
    status: str                  # finished | interrupted | diverged | early-stopped
    step: int
    best_val: float | None
    exit_code: int = 0
    ended_by: str | None = None  # the budget that ended the run: max_time | max_steps | max_epochs


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


FIRST_EVAL_SECONDS = 30.0   # the first time-cadence evaluation, after the first step
_clock = time.perf_counter  # the loop's only clock (tests substitute a fake one)


class _EvalAborted(Exception):
    """Raised by the signal handler inside an evaluation."""


class _Stop:
    """SIGINT / SIGTERM: the loop checks ``signum`` after every step; during an evaluation a signal
    aborts it (``evaluating`` is set only around the evaluation itself, never around a write)."""

    def __init__(self):
        self.signum = 0
        self.count = 0
        self.evaluating = False

    def __call__(self, signum, frame):
        self.signum = self.signum or signum
        self.count += 1
        if self.evaluating:
            self.evaluating = False
            raise _EvalAborted


class _BudgetUsedUp(Exception):
    """A fresh run's --max-time ended before its first step (setup and calibration took it all)."""


class Trainer:
    def __init__(self, spec: RunSpec, *, notice):
        self.spec = spec
        self.notice = notice
        self.cfg: TrainConfig = spec.train
        self.mcfg: ModelConfig = spec.model
        self.dcfg: DataConfig = spec.data

    # ----- the run ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        spec, cfg = self.spec, self.cfg
        self.t0, self.elapsed0 = _clock(), 0.0  # --max-time counts this run's setup too
        chosen_before = spec.choice is not None
        w = self.world = distributed.world()
        if w.size > 1:  # every rank validated the same options; rank 0's directory name is the run's
            spec.run_dir = w.bcast(spec.run_dir)
            w.barrier()
        if not w.is_root:
            self.notice = lambda msg: None
        created = rundir.make_run_dir(spec.run_dir) if w.is_root else False  # True only if this process made it
        if w.is_root:
            ckpt.check_writable_dir(spec.run_dir)
        with ckpt.RunLock(spec.run_dir) if w.is_root else contextlib.nullcontext():
            if w.is_root:  # decided again under the lock: another trainer may have filled the directory
                rundir.check_under_lock(spec.run_dir, fresh=not spec.resumed)
            set_threads(cfg.threads or (distributed.threads_per_rank(w) if w.size > 1 else 0))
            # first-ever start: the kernels compile in two helper processes while the corpus is read
            self.warm = spec.warm = warmup.start(self._kernel_options(), cfg, spec.device) if w.size == 1 else None
            try:
                data = build_data(spec, notice=self.notice) if w.is_root else None
            except BaseException:
                if self.warm:
                    self.warm.stop()
                if not spec.resumed:  # a bad corpus leaves no half-made run directory behind
                    rundir.discard_fresh(spec.run_dir, created)
                raise
            if w.size > 1:
                data = distributed.share_data(spec, data, w)
            self.tok, self.streams, self.val = data.tokenizer, data.streams, data.val
            self.cfg = cfg = data.train_cfg  # batch/seq may have shrunk to fit
            self.mcfg = spec.model              # vocabulary size known now
            from .model import CharLM

            self.model = CharLM(self.mcfg, seed=cfg.seed, device=spec.device)
            if spec.source is not None and not spec.resumed:  # --init-from: the source's weights, new rows fresh
                from .finetune import transfer

                transfer(self.model, spec.source)
            self.opt = Optimizer(cfg, self.model)
            self.lo, self.hi = distributed.shard(cfg.batch_size, w)   # this rank's streams
            self.state = self.model.init_state(self.hi - self.lo)
            self.step, self.best_val, self.bad_evals = 0, None, 0
            self.lr, self.lr_anchor, self.last_eval = None, None, (None, 0.0)  # last_eval: (step, seconds)
            if chosen_before:  # a size calibration made before this run started counts inside --max-time
                self.elapsed0 = spec.choice.calibration_seconds   # (one made by build_data is on the clock)
            self.now = self.elapsed0  # the run's clock as every rank agrees on it (updated after each step)
            if spec.resumed:
                self._load_checkpoint()
            elif w.is_root:
                spec.save_files(self.tok, cfg)
            self.log = (RunLog(spec.run_dir, notice=self.notice, resume_step=self.step if spec.resumed else None)
                        if w.is_root else distributed.NullLog())
            try:
                result = self._loop()
                w.barrier()             # every rank leaves together, after rank 0 has written its files
                distributed.mark_clean()
                return result
            except _BudgetUsedUp as e:  # nothing was trained: no half-made run is left behind
                if w.is_root:
                    rundir.discard_fresh(spec.run_dir, created, (rundir.IDS, rundir.CONFIG, rundir.TOKENIZER,
                                                                 rundir.METRICS))
                raise UsageError(str(e)) from None
            finally:
                self.log.close()
                if self.warm:
                    self.warm.stop()

    def _budget_steps(self, cfg: TrainConfig | None = None) -> int:
        """Total optimizer steps the budget allows (0 = unbounded by steps)."""
        cfg, wpe = cfg or self.cfg, self.streams.windows_per_epoch
        cands = []
        if cfg.max_steps:
            cands.append(cfg.max_steps)
        if cfg.max_epochs:
            cands.append(int(math.ceil(cfg.max_epochs * wpe)))
        return min(cands) if cands else 0

    def _kernel_options(self) -> dict:
        """The model options that decide which kernels a run compiles, known before the corpus is read:
        the size may still be chosen (charlm.autosize), the cell is already known."""
        opts = dict(self.spec.model_options)
        if getattr(self.spec, "autosize", False) and "cell" not in opts:
            from .autosize import CELL

            opts["cell"] = CELL
        return opts

    @property
    def elapsed(self) -> float:
        """Seconds of the whole run so far (earlier sessions of a resumed run included)."""
        return self.elapsed0 + (_clock() - self.t0)

    def _tick(self) -> float:
        """The clock every decision uses: read now in one process; under MPI, rank 0's clock as agreed
        at the last step (so every rank takes the same decisions)."""
        if self.world.size == 1:
            self.now = self.elapsed
        return self.now

    def _agree_clock(self, agreed: float, local: float) -> None:
        """Under MPI: adopt rank 0's clock (``agreed``, against this rank's ``local`` reading)."""
        self.elapsed0 += agreed - local
        self.now = agreed

    def _loop(self) -> TrainResult:
        cfg, model, streams = self.cfg, self.model, self.streams
        wpe = streams.windows_per_epoch
        total = self._budget_steps()
        chars_per_step = cfg.batch_size * cfg.seq_len
        stopper = self.stopper = _Stop()
        old = {s: signal.signal(s, stopper) for s in (signal.SIGINT, signal.SIGTERM)}
        status, exit_code, ended_by = "finished", 0, None
        interval_loss, interval_steps, interval_time, interval_chars = 0.0, 0, 0.0, 0
        grad_norm, step_time, cps = 0.0, 0.0, 0.0  # step_time: one loop iteration (logging etc. included)
        top = None  # elapsed at the top of the previous iteration, None after an evaluation
        first = True
        self.session_start = self.step
        next_log = next_eval = None  # elapsed seconds of the next time-cadence line / evaluation
        if self.world.size > 1:
            local = self.elapsed
            self._agree_clock(self.world.bcast(local), local)
        try:
            while True:
                if total and self.step >= total:
                    ended_by = "max_steps" if cfg.max_steps and self.step >= cfg.max_steps else "max_epochs"
                    break
                now = self._tick()
                if cfg.max_time and now >= cfg.max_time and not self.step and not self.spec.resumed:
                    from .autosize import used_up

                    choice = self.spec.choice
                    raise _BudgetUsedUp(used_up(cfg.max_time, now, choice.calibration_seconds if choice else 0.0,
                                                self.spec.run_dir))
                if top is not None:
                    step_time = now - top
                top = now
                if cfg.max_time and self.step and self._time_up(now, step_time):
                    ended_by = "max_time"
                    break
                epoch, k = divmod(self.step, wpe)
                if k == 0:
                    self.state = model.init_state(self.hi - self.lo)
                x, y = self._window(epoch, k)
                t0 = _clock()
                if first and self.warm:
                    self.warm.wait()
                rng = np.random.default_rng((cfg.seed, self.step)) if self.mcfg.dropout > 0 else None
                if rng is not None and self.world.size > 1:
                    rng = distributed.ShardRNG(rng, cfg.batch_size, self.lo, self.hi)
                loss, new_state = model.train_step(x, y, self.state, rng)
                if self.world.size > 1:
                    distributed.allreduce_grads(self.world, model)
                grad_norm = self.opt.clip()
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    status, exit_code = "diverged", 1
                    saved = any(p.exists() for p in ckpt.checkpoint_paths(self.spec.run_dir))
                    kept = "the last good checkpoint is kept" if saved else "no checkpoint had been saved yet"
                    self.log.say(f"training diverged at step {self.step + 1} (loss {loss}, grad norm {grad_norm}); "
                                 f"{kept}. Try a lower --lr or a --clip-norm.")
                    break
                self.lr = lr = self._lr()
                self.opt.step(lr)
                self.state = new_state
                self.step += 1
                dt = _clock() - t0
                if self.world.size > 1:  # one small all-reduce: mean loss, signals, rank 0's clock
                    local = self.elapsed
                    loss, agreed, stopper.signum = distributed.step_control(self.world, loss, local, stopper.signum)
                    self._agree_clock(agreed, local)
                now = self._tick()
                interval_loss += loss
                interval_steps += 1
                if first:  # includes the JIT compile (or cache load) of every kernel
                    first, top = False, None
                    next_log = now + cfg.log_interval
                    next_eval = now + min(FIRST_EVAL_SECONDS, cfg.eval_interval)
                    rec = self._train_record(interval_loss / interval_steps, lr, grad_norm, None)
                    self.log.train_line(rec, total, None, first_step=dt)
                    interval_loss, interval_steps = 0.0, 0
                else:
                    interval_time += dt
                    interval_chars += chars_per_step
                    if cfg.log_every and self.step % cfg.log_every == 0 or not cfg.log_every and now >= next_log:
                        cps = interval_chars / interval_time if interval_time > 0 else 0.0
                        rec = self._train_record(interval_loss / interval_steps, lr, grad_norm, cps)
                        self.log.train_line(rec, total, self._eta(total, cps))
                        interval_loss, interval_steps, interval_time, interval_chars = 0.0, 0, 0.0, 0
                        next_log = now + cfg.log_interval
                if stopper.signum:
                    status, exit_code = "interrupted", 128 + stopper.signum
                    break
                if self._eval_due(now, next_eval):
                    stop = self._evaluate_and_save()
                    next_eval, top = self._tick() + cfg.eval_interval, None
                    if stopper.signum:
                        status, exit_code = "interrupted", 128 + stopper.signum
                        break
                    if stop:
                        status = "early-stopped"
                        break
                elif cfg.save_every and self.step % cfg.save_every == 0:
                    self._save_checkpoint()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.world.is_root:
                    self._print_sample()
            if interval_steps and status != "diverged":  # the steps since the last line get theirs too
                cps = interval_chars / interval_time if interval_time > 0 else cps
                self.log.train_line(self._train_record(interval_loss / interval_steps, lr, grad_norm, cps), total,
                                    None)
            if status == "diverged":
                self._salvage()
            else:
                self._finish()
                if stopper.signum and status != "interrupted":  # a signal during the final evaluation
                    status, exit_code = "interrupted", 128 + stopper.signum
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        result = TrainResult(self.spec.run_dir, status, self.step, self.best_val, exit_code, ended_by)
        if status == "interrupted":
            self.log.say(f"interrupted at step {self.step}; checkpoint saved. Resume with: "
                         f"charlm train --resume {shlex.quote(str(self.spec.run_dir))}")
        return result

    def _train_record(self, mean: float, lr: float, grad_norm: float, cps: float | None) -> dict:
        return {"step": self.step, "epoch": round(self.step / self.streams.windows_per_epoch, 4), "train_loss": mean,
                "train_bpc": mean / LN2, "lr": lr, "grad_norm": grad_norm, "chars_per_sec": cps,
                "elapsed": round(self.elapsed, 3)}

    def _time_up(self, now: float, step_time: float) -> bool:
        """True when one more step and the final evaluation would not fit in --max-time."""
        cfg = self.cfg
        reserve = self._final_eval_estimate(step_time)
        if now + step_time + reserve < cfg.max_time:
            return False
        from .autosize import seconds_text

        kept = f" (keeping ~{reserve:.0f}s for the final evaluation)" if reserve >= 1 else ""
        if self.step - self.session_start == 1 and not self.spec.resumed:  # the budget ended within step 1
            kept += (f" after only 1 step ({seconds_text(now)} of setup and step 1, kernel compilation or cache "
                     "load included); give a bigger --max-time to train more than one step")
        self.log.say(f"time budget of {seconds_text(cfg.max_time)} reached{kept}")
        return True

    def _final_eval_estimate(self, step_time: float) -> float:
        """Seconds the final evaluation and save will take: the last evaluation's, else from the step time."""
        if self.val is None or self.last_eval[0] is not None:
            return 1.1 * self.last_eval[1]
        # no evaluation yet: scoring runs the forward pass only, about a third of a training step
        return 0.5 * self._val_size() * step_time / (self.cfg.batch_size * self.cfg.seq_len)

    def _eval_due(self, now: float, next_eval: float | None) -> bool:
        cfg = self.cfg
        if cfg.eval_every:
            return self.step % cfg.eval_every == 0
        if next_eval is None or now < next_eval:
            return False
        # not just before the end: the final evaluation is coming
        return not (cfg.max_time and cfg.max_time - now < 0.25 * cfg.eval_interval)

    def _finish(self) -> None:
        """The end of every run that did not diverge: the checkpoint first (the steps are safe), a model
        file if there is none, then the final evaluation unless this step was just evaluated."""
        model_path = os.path.join(self.spec.run_dir, rundir.MODEL)
        if self.last_eval[0] == self.step:
            return  # evaluated and saved at this very step
        if self.step == self.session_start:  # no step in this session: the run already ended here
            self._ensure_model(model_path)
            self.log.say(f"nothing to train: the budget was already used up at step {self.step}; give a new "
                         "budget with --resume (it replaces the stored one)")
            return
        signals = self.stopper.count
        self._save_checkpoint()
        self._ensure_model(model_path)
        if self.val is None:
            return
        if self.world.size == 1 and (self.stopper.count >= 2 or self.stopper.count > signals):
            self.log.say("checkpoint saved; final evaluation skipped (second signal)")
            return
        if self.stopper.signum:
            self.log.say("checkpoint saved; evaluating before exit (signal again to skip)")
        self._evaluate_and_save(final=True)

    def _ensure_model(self, model_path: str) -> None:
        if self.world.is_root and not os.path.exists(model_path):
            self._save_model(model_path, None)

    def _salvage(self) -> None:
        """After divergence: make sure model.safetensors exists, from the last good checkpoint."""
        if not self.world.is_root:
            return
        path = os.path.join(self.spec.run_dir, rundir.MODEL)
        if os.path.exists(path):
            return
        try:
            tensors, meta, _ = ckpt.load_checkpoint(self.spec.run_dir)
        except CharlmError:
            return  # nothing good was ever saved
        self.model.flat[:] = self.model.backend.to_device(tensors["model.flat"].astype(self.model.dtype))
        self.step = int(meta["step"])
        self._save_model(path, None)

    def _progress(self, cfg: TrainConfig, total: int) -> float | None:
        """Fraction of the budget used: steps when a step budget applies, else time."""
        if total:
            return self.step / total
        return self.now / cfg.max_time if cfg.max_time else None

    def _lr(self) -> float:
        total = self._budget_steps() or None
        progress = self._progress(self.cfg, total)
        lr = learning_rate(self.cfg, self.step, total, None if total else progress)
        if self.lr_anchor and progress is not None:  # a budget changed at resume: fade into the new schedule
            p0, offset, width = self.lr_anchor["progress"], self.lr_anchor["offset"], self.lr_anchor["width"]
            lr += offset * max(0.0, 1.0 - (progress - p0) / width)
        return lr

    def _anchor_schedule(self, old_cfg: TrainConfig, old_lr: float | None) -> None:
        """After a resume that changed the budget: start from the rate in use and fade into the schedule
        of the new budget over a tenth of what remains (the user is told exactly that)."""
        keys = ("max_steps", "max_epochs", "max_time")
        if all(getattr(old_cfg, k) == getattr(self.cfg, k) for k in keys) or self.step == 0:
            return
        new_total = self._budget_steps() or None
        progress = self._progress(self.cfg, new_total)
        if old_lr is None:  # a checkpoint from before the rate was saved: the old schedule's rate
            old_total = self._budget_steps(old_cfg) or None
            old_progress = self._progress(old_cfg, old_total)
            old_lr = learning_rate(old_cfg, self.step, old_total, None if old_total else old_progress)
        plan = learning_rate(self.cfg, self.step, new_total, None if new_total else progress)
        if progress is None or progress >= 1.0 or math.isclose(old_lr, plan, rel_tol=1e-9, abs_tol=1e-12):
            self.lr_anchor = None
            return
        width = 0.1 * (1.0 - progress)
        self.lr_anchor = {"progress": progress, "offset": old_lr - plan, "width": width}
        span = (f"{max(1, round(width * new_total))} steps" if new_total
                else f"{width * self.cfg.max_time:.0f}s")
        self.notice(f"new budget at resume: the learning rate moves from {old_lr:.2e} (where the run stopped) "
                    f"to the {self.cfg.lr_schedule} schedule of the new budget ({plan:.2e} at this point) over the "
                    f"next {span}, then follows it")

    def _window(self, epoch: int, k: int):
        """This rank's columns of window k of the epoch: (T, B / ranks) int32 inputs and targets."""
        x, y = self.streams.window(epoch, k)
        if self.world.size == 1:
            return x, y
        return np.ascontiguousarray(x[:, self.lo:self.hi]), np.ascontiguousarray(y[:, self.lo:self.hi])

    def _eta(self, total: int, cps: float) -> float | None:
        cands = []
        if total and cps > 0:
            cands.append((total - self.step) * self.cfg.batch_size * self.cfg.seq_len / cps)
        if self.cfg.max_time:
            cands.append(self.cfg.max_time - self.elapsed)
        return min(cands) if cands else None

    # ----- evaluation -------------------------------------------------------------------------
    def _val_size(self) -> int:
        n = 0 if self.val is None else len(self.val) - 1
        return min(n, self.cfg.val_chars) if self.cfg.val_chars else n

    def evaluate(self) -> float | None:
        """Mean nats per character over the validation subset (``val_chars``; 0 = the whole split)."""
        if self.val is None:
            return None
        cfg = self.cfg
        if cfg.val_chars and len(self.val) - 1 > cfg.val_chars:
            return evaluate_pieces(self.model, self.val, cfg.val_chars, cfg.batch_size, cfg.seq_len, world=self.world)
        return evaluate_ids(self.model, self.val, cfg.batch_size, cfg.seq_len, world=self.world)

    def _evaluate_and_save(self, final: bool = False) -> bool:
        """Evaluate, keep the best weights, write a checkpoint; True when early stopping triggers.
        A signal during the evaluation aborts it: the checkpoint is still written (unless final:
        then it already was)."""
        t0 = _clock()
        est = self._final_eval_estimate(0.0)
        if final or est >= 5.0:
            what = "the whole validation split" if not self.cfg.val_chars else "validation"
            self.log.say(f"{'final ' if final else ''}evaluation: {self._val_size():,} characters of {what}"
                         + (f" (~{est:.0f}s)" if est >= 1 else "") + "...")
        self.stopper.evaluating = self.world.size == 1  # under MPI every rank must finish its all-reduce
        try:
            val = self.evaluate()
        except _EvalAborted:  # the loop stops now, and _finish writes the checkpoint first
            self.log.say(f"evaluation at step {self.step} aborted by a signal")
            return False
        finally:
            self.stopper.evaluating = False
        improved = val is not None and (self.best_val is None or val < self.best_val)
        if val is not None:
            rec = {"step": self.step, "epoch": round(self.step / self.streams.windows_per_epoch, 4),
                   "val_loss": val, "val_bpc": val / LN2, "elapsed": round(self.elapsed, 3)}
            self.log.eval_line(rec, improved)
        if improved:
            self.best_val, self.bad_evals = val, 0
        elif val is not None:
            self.bad_evals += 1
        model_path = os.path.join(self.spec.run_dir, rundir.MODEL)
        if self.world.is_root and (improved or val is None or not os.path.exists(model_path)):
            self._save_model(model_path, val)
        if not final or val is not None:  # final: written before; again for best_val / bad_evals
            self._save_checkpoint()
        self.last_eval = (self.step, self.world.bcast(_clock() - t0) if self.world.size > 1 else _clock() - t0)
        if final:
            return False
        return bool(self.cfg.patience and self.bad_evals >= self.cfg.patience)

    def _save_model(self, path: str, val: float | None) -> None:
        extra = {"step": self.step, "ranks": self.world.size, "epoch": self.step / self.streams.windows_per_epoch,
                 "chars_seen": self.step * self.cfg.batch_size * self.cfg.seq_len,
                 "train_seconds": round(self.elapsed, 3), "val_loss": val,
                 "val_bpc": None if val is None else val / LN2}
        if self.spec.lineage:
            extra["fine_tuned_from"] = self.spec.lineage
        ckpt.save_model(path, self.model.state_dict(), model_config=self.mcfg.to_dict(),
                        tokenizer=self.tok.to_dict(), extra=extra)

    # ----- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        be = self.model.backend
        # the GLOBAL carried state (L, B, H): gathered from every rank, so any N can resume it
        h, c = (self.world.allgather_rows(be.to_host(s), axis=1) for s in self.state)
        if not self.world.is_root:
            return
        tensors = {"model.flat": be.to_host(self.model.flat), **self.opt.tensors(), "state.h": h, "state.c": c}
        meta = {"step": self.step, "epoch": self.step / self.streams.windows_per_epoch, "ranks": self.world.size,
                "opt_steps": self.opt.step_count, "best_val": self.best_val,
                "bad_evals": self.bad_evals, "elapsed": self.elapsed, "lr": self.lr, "lr_anchor": self.lr_anchor,
                "model_config": self.mcfg.to_dict(), "train_config": self.cfg.to_dict(),
                "data_config": self.dcfg.to_dict(), "data_fingerprint": self.spec.fingerprint,
                "tokenizer": self.tok.to_dict()}
        ckpt.save_checkpoint(self.spec.run_dir, tensors, meta, step=self.step, keep=self.cfg.keep)

    def _load_checkpoint(self) -> None:
        tensors, meta, path = ckpt.load_checkpoint(self.spec.run_dir, notice=self.notice)
        if meta.get("model_config") != self.mcfg.to_dict():
            raise CharlmError(f"{path} does not match the run's config.json (model config differs); "
                              "the run directory was modified: start a new run with --out")
        if meta.get("data_fingerprint") not in (None, self.spec.fingerprint):
            raise UsageError("the corpus has changed since this run started (its fingerprint differs); "
                             "resume with the original text, or start a new run with --out")
        be = self.model.backend
        flat = tensors["model.flat"]
        if flat.shape != (self.model.size,):
            raise CharlmError(f"{path}: parameter buffer has {flat.shape} entries, expected {self.model.size}")
        self.model.flat[:] = be.to_device(flat.astype(self.model.dtype))
        self.opt.load(tensors, int(meta["opt_steps"]))
        h, c = (np.ascontiguousarray(tensors[k][:, self.lo:self.hi]) for k in ("state.h", "state.c"))
        self.state = (be.to_device(h), be.to_device(c))
        self.step = int(meta["step"])
        self.best_val = meta.get("best_val")
        self.bad_evals = int(meta.get("bad_evals", 0))
        self.elapsed0 = self.now = float(meta.get("elapsed", 0.0))
        self.lr_anchor = meta.get("lr_anchor")
        self.notice(f"resuming {self.spec.run_dir} from step {self.step}")
        old_cfg = meta.get("train_config")
        if isinstance(old_cfg, dict):
            known = {k: v for k, v in old_cfg.items() if k in self.cfg.to_dict()}
            self._anchor_schedule(TrainConfig.from_dict({**self.cfg.to_dict(), **known}), meta.get("lr"))

    def _print_sample(self) -> None:
        from .generate import sample_model

        text = sample_model(self.model, self.tok, length=200, temperature=0.8, seed=self.step)
        self.log.say("---- sample ----\n" + text + "\n----------------")


def evaluate_pieces(model, ids: np.ndarray, n: int, batch_size: int, seq_len: int, *, world=None) -> float:
    """Mean nats/char over a fixed subset of about ``n`` predictions: B pieces of equal length spread
    evenly over ``ids`` (each scored as one stream from a zero state), so the estimate covers the
    whole split at a fraction of its cost. Under MPI each rank scores its share of the pieces."""
    world = world or distributed.Solo()
    B = max(1, min(batch_size, n // max(1, seq_len)))
    length = max(1, n // B)
    starts = np.linspace(0, len(ids) - 1 - length, B).astype(np.int64)
    lo, hi = (0, B) if B % world.size else distributed.shard(B, world)
    if B % world.size and not world.is_root:
        lo = hi = 0                     # too few pieces to split evenly: rank 0 scores them all
    starts = starts[lo:hi]
    total, count = 0.0, 0
    if len(starts) == 0:
        total, count = world.allreduce(np.array([total, count], dtype=np.float64))
        return total / count
    x_all = np.stack([np.asarray(ids[s:s + length], dtype=np.int32) for s in starts], axis=1)  # (L, B)
    y_all = np.stack([np.asarray(ids[s + 1:s + 1 + length], dtype=np.int32) for s in starts], axis=1)
    state = model.init_state(len(starts))
    for t in range(0, length, seq_len):
        s, c, state = model.loss(np.ascontiguousarray(x_all[t:t + seq_len]),
                                 np.ascontiguousarray(y_all[t:t + seq_len]), state)
        total += s
        count += c
    if world.size > 1:
        total, count = world.allreduce(np.array([total, count], dtype=np.float64))
    return total / count


def evaluate_ids(model, ids: np.ndarray, batch_size: int, seq_len: int, *, world=None) -> float:
    """Mean nats/char predicting ids[1:] from their prefixes, with B contiguous streams.

    The split is cut into B streams of equal length (state carried through each, from
    zero); the few characters that do not fill a stream are scored as one more stream.
    Under MPI (``world`` with several ranks) each rank scores its share of the B streams
    (rank 0 also the remainder) and the sums are all-reduced: the same number on every rank.
    """
    world = world or distributed.Solo()
    n = len(ids) - 1
    if n <= 0:
        return float("nan")
    B = max(1, min(batch_size, n // max(1, seq_len)))
    per = n // B
    total, count = 0.0, 0
    lo, hi = (0, B) if B % world.size else distributed.shard(B, world)
    if B % world.size and not world.is_root:
        lo = hi = 0                     # too few streams to split evenly: rank 0 scores them all
    segments = [(hi - lo, per, lo * per)] if hi > lo else []
    if n - B * per > 0 and world.is_root:
        segments.append((1, n - B * per, B * per))
    for b, length, start in segments:
        x_all = np.asarray(ids[start:start + b * length], dtype=np.int32).reshape(b, length).T
        y_all = np.asarray(ids[start + 1:start + 1 + b * length], dtype=np.int32).reshape(b, length).T
        state = model.init_state(b)
        for t in range(0, length, seq_len):
            x = np.ascontiguousarray(x_all[t:t + seq_len])
            y = np.ascontiguousarray(y_all[t:t + seq_len])
            s, c, state = model.loss(x, y, state)
            total += s
            count += c
    if world.size > 1:
        total, count = world.allreduce(np.array([total, count], dtype=np.float64))
    return total / count


class _CallableModule(types.ModuleType):
    """``charlm.train(...)`` is the library's training function, but ``import charlm.train`` (this module)
    rebinds the package attribute ``charlm.train`` to the module itself; calling the module calls the
    function, so both spellings keep working whichever was imported first."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
