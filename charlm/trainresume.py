"""What a training run writes to be resumed and how ``--resume`` restores it (``ResumableRun``, a
base of ``charlm.trainer.Trainer``): the model file, the checkpoints (weights, optimizer state, the
carried hidden state gathered from every rank), the salvage after divergence, and the learning-rate
schedule, which fades into a budget changed at resume.

Resume with a new budget: a budget given at --resume replaces the stored one. The learning-rate
schedule then follows the new budget (as if it had been planned from the start) and reaches it
smoothly: the offset between the rate in use and the new schedule's rate fades out linearly over
the first tenth of the remaining budget.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import checkpoint as ckpt
from . import rundir
from .config import TrainConfig
from .errors import CharlmError, UsageError
from .optim import learning_rate
from .runlog import LN2


class ResumableRun:
    """The Trainer's saving and restoring (it provides spec, cfg, mcfg, dcfg, model, opt, tok, world,
    state, step, streams, best_val, bad_evals, lr, lr_anchor, elapsed, now, notice, _budget_steps)."""

    def _save_model(self, path: str, val: float | None) -> None:
        extra = {"step": self.step, "ranks": self.world.size, "epoch": self.step / self.streams.windows_per_epoch,
                 "chars_seen": self.step * self.cfg.batch_size * self.cfg.seq_len,
                 "train_seconds": round(self.elapsed, 3), "val_loss": val,
                 "val_bpc": None if val is None else val / LN2}
        if self.spec.lineage:
            extra["fine_tuned_from"] = self.spec.lineage
        ckpt.save_model(path, self.model.state_dict(), model_config=self.mcfg.to_dict(),
                        tokenizer=self.tok.to_dict(), extra=extra)

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
