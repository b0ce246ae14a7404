"""The training loop (``Trainer``): stateful truncated BPTT with budgets, evaluation, checkpoints and signals.

``charlm.train.train`` builds the run (``charlm.trainsetup``) and runs it here; what a run saves and
restores on --resume is ``charlm.trainresume``, the evaluation loops ``charlm.evaluation``.

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

Resume with a new budget: see ``charlm.trainresume`` (the learning rate fades into the new schedule).

Everything a resumed run needs is derived from the step number or saved in the
checkpoint: the data cursor is (epoch, window) = divmod(step, windows per epoch);
dropout masks come from ``default_rng((seed, step))``; the checkpoint holds the
weights, the optimizer state and the carried hidden state. So a run stopped at
step k and resumed logs the same losses for steps k+1, k+2, ... as an
uninterrupted run (same machine and thread count).
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
import time
from dataclasses import dataclass

import numpy as np

from . import checkpoint as ckpt
from . import distributed, rundir, warmup
from .config import DataConfig, ModelConfig, TrainConfig
from .errors import UsageError
from .evaluation import evaluate_ids, evaluate_pieces
from .optim import Optimizer
from .runlog import LN2, RunLog
from .trainbudget import BudgetedRun
from .trainresume import ResumableRun
from .trainsetup import RunSpec, build_data, set_threads


@dataclass
class TrainResult:
    run_dir: str
    status: str                  # finished | interrupted | diverged | early-stopped
    step: int
    best_val: float | None
    exit_code: int = 0
    ended_by: str | None = None  # the budget that ended the run: max_time | max_steps | max_epochs


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


class Trainer(BudgetedRun, ResumableRun):
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
            # A CPU run starts on the NumPy backend and switches to the compiled kernels (_use_compiled):
            # after step 1 when they are in the cache (loading them and Numba costs ~0.6 s, after the
            # first step instead of before it), else when the helpers that compile them are done (a
            # first-ever start; they start now, while the corpus is read). A resumed run with its kernels
            # cached, and an MPI rank, run them from the start.
            self.warm = spec.warm = warmup.start(self._kernel_options(), cfg, spec.device) if w.size == 1 else None
            self.numpy_first = spec.device == "cpu" and w.size == 1 and (self.warm is not None or not spec.resumed)
            spec.numpy_first = self.numpy_first
            if self.numpy_first:
                self._blas_limit = warmup.one_blas_thread()
            else:
                self._blas_limit = None
                set_threads(cfg.threads or (distributed.threads_per_rank(w) if w.size > 1 else 0))
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

            device = "numpy" if self.numpy_first else spec.device
            self.model = CharLM(self.mcfg, seed=cfg.seed, device=device)
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

    def _use_compiled(self) -> None:
        """The kernels are in the cache: from this step on the run uses them (the same arrays)."""
        if self._blas_limit is not None:
            self._blas_limit.restore_original_limits()
            self._blas_limit = None
        set_threads(self.cfg.threads)
        self.model.use_backend("cpu")
        if self.warm is not None:  # after step 1 of a run whose kernels were cached, nothing to say
            self.notice(f"kernels compiled ({self.elapsed:.0f}s into the run): step {self.step + 1:,} onwards "
                        "runs them; until now it ran on NumPy (only a first-ever start does)")

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
                if self.model.device == "numpy" and (self.warm.ready() if self.warm is not None else self.step):
                    self._use_compiled()
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

    def _window(self, epoch: int, k: int):
        """This rank's columns of window k of the epoch: (T, B / ranks) int32 inputs and targets."""
        x, y = self.streams.window(epoch, k)
        if self.world.size == 1:
            return x, y
        return np.ascontiguousarray(x[:, self.lo:self.hi]), np.ascontiguousarray(y[:, self.lo:self.hi])

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

    def _print_sample(self) -> None:
        from .generate import sample_model

        text = sample_model(self.model, self.tok, length=200, temperature=0.8, seed=self.step)
        self.log.say("---- sample ----\n" + text + "\n----------------")
