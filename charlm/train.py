"""Training: stateful truncated BPTT with budgets, evaluation, checkpoints and signals.

Flow of one run: read the corpus -> tokenizer -> ids -> train/val split -> B
contiguous streams cut into windows of T -> for each optimizer step: forward and
backward over one window (hidden state carried from the previous window of the
same epoch, reset at epoch boundaries), clip, update, log; evaluate, save and
sample on their cadences; stop at the first budget reached, on SIGINT/SIGTERM,
on early stopping or on a non-finite loss.

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
import time
from dataclasses import dataclass

import numpy as np

from . import checkpoint as ckpt
from . import distributed, rundir
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


class _Stop:
    """Set by SIGINT / SIGTERM; the loop checks it after every step."""

    def __init__(self):
        self.signum = 0

    def __call__(self, signum, frame):
        if self.signum:  # second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum


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
            try:
                data = build_data(spec, notice=self.notice) if w.is_root else None
            except BaseException:
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
            self.step, self.best_val, self.bad_evals, self.elapsed = 0, None, 0, 0.0
            if spec.choice is not None:  # the size calibration counts inside --max-time
                self.elapsed = spec.choice.calibration_seconds
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
            finally:
                self.log.close()

    def _budget_steps(self) -> int:
        """Total optimizer steps the budget allows (0 = unbounded by steps)."""
        cfg, wpe = self.cfg, self.streams.windows_per_epoch
        cands = []
        if cfg.max_steps:
            cands.append(cfg.max_steps)
        if cfg.max_epochs:
            cands.append(int(math.ceil(cfg.max_epochs * wpe)))
        return min(cands) if cands else 0

    def _loop(self) -> TrainResult:
        cfg, model, streams = self.cfg, self.model, self.streams
        wpe = streams.windows_per_epoch
        total = self._budget_steps()
        chars_per_step = cfg.batch_size * cfg.seq_len
        stopper = _Stop()
        old = {s: signal.signal(s, stopper) for s in (signal.SIGINT, signal.SIGTERM)}
        status, exit_code = "finished", 0
        interval_loss, interval_steps, interval_time, interval_chars = 0.0, 0, 0.0, 0
        grad_norm, lr = 0.0, cfg.lr
        first = True
        try:
            while True:
                if total and self.step >= total:
                    break
                if cfg.max_time and self.elapsed >= cfg.max_time:
                    self.log.say(f"time budget of {cfg.max_time:.0f}s reached")
                    break
                epoch, k = divmod(self.step, wpe)
                if k == 0:
                    self.state = model.init_state(self.hi - self.lo)
                x, y = self._window(epoch, k)
                t0 = time.perf_counter()
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
                lr = self._lr()
                self.opt.step(lr)
                self.state = new_state
                self.step += 1
                dt = time.perf_counter() - t0
                if first:  # includes the JIT compile (or cache load) of every kernel
                    first = False
                    self.log.say(f"first step took {dt:.2f}s (kernel compilation or cache load included)")
                else:
                    interval_time += dt
                    interval_chars += chars_per_step
                self.elapsed += dt
                if self.world.size > 1:  # one small all-reduce: mean loss, signals, rank 0's clock
                    loss, self.elapsed, stopper.signum = distributed.step_control(
                        self.world, loss, self.elapsed, stopper.signum)
                interval_loss += loss
                interval_steps += 1
                if self.step % cfg.log_every == 0 or self.step == 1:
                    cps = interval_chars / interval_time if interval_time > 0 else 0.0
                    mean = interval_loss / interval_steps
                    rec = {"step": self.step, "epoch": round(self.step / wpe, 4), "train_loss": mean,
                           "train_bpc": mean / LN2, "lr": lr, "grad_norm": grad_norm,
                           "chars_per_sec": cps, "elapsed": round(self.elapsed, 3)}
                    self.log.train_line(rec, total, self._eta(total, cps))
                    interval_loss, interval_steps, interval_time, interval_chars = 0.0, 0, 0.0, 0
                stop_now = bool(stopper.signum)
                t1 = time.perf_counter()  # evaluation, saving and sampling count toward --max-time
                if self.step % cfg.eval_every == 0 and not stop_now:
                    if self._evaluate_and_save():
                        status = "early-stopped"
                        break
                elif self.step % cfg.save_every == 0 and not stop_now:
                    self._save_checkpoint()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.world.is_root:
                    self._print_sample()
                self.elapsed += time.perf_counter() - t1
                if stop_now:
                    status = "interrupted"
                    exit_code = 128 + stopper.signum
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if interval_steps and status != "diverged":  # the steps since the last log line get their line too
            cps = interval_chars / interval_time if interval_time > 0 else 0.0
            mean = interval_loss / interval_steps
            self.log.train_line({"step": self.step, "epoch": round(self.step / wpe, 4), "train_loss": mean,
                                 "train_bpc": mean / LN2, "lr": lr, "grad_norm": grad_norm,
                                 "chars_per_sec": cps, "elapsed": round(self.elapsed, 3)}, total, None)
        if status != "diverged":
            self._evaluate_and_save(final=True)
        else:
            self._salvage()
        result = TrainResult(self.spec.run_dir, status, self.step, self.best_val, exit_code)
        if status == "interrupted":
            self.log.say(f"interrupted at step {self.step}; checkpoint saved. Resume with: "
                         f"charlm train --resume {shlex.quote(str(self.spec.run_dir))}")
        return result

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

    def _lr(self) -> float:
        total = self._budget_steps() or None
        progress = self.elapsed / self.cfg.max_time if self.cfg.max_time and not total else None
        return learning_rate(self.cfg, self.step, total, progress)

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
    def evaluate(self) -> float | None:
        """Mean nats per character over the whole validation split (its own carried state)."""
        if self.val is None:
            return None
        return evaluate_ids(self.model, self.val, self.cfg.batch_size, self.cfg.seq_len, world=self.world)

    def _evaluate_and_save(self, final: bool = False) -> bool:
        """Evaluate, keep the best weights, write a checkpoint; True when early stopping triggers."""
        val = self.evaluate()
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
        self._save_checkpoint()
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
                "bad_evals": self.bad_evals, "elapsed": self.elapsed,
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
        self.elapsed = float(meta.get("elapsed", 0.0))
        self.notice(f"resuming {self.spec.run_dir} from step {self.step}")

    def _print_sample(self) -> None:
        from .generate import sample_model

        text = sample_model(self.model, self.tok, length=200, temperature=0.8, seed=self.step)
        self.log.say("---- sample ----\n" + text + "\n----------------")


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
