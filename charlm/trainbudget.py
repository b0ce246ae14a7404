"""When a training run stops and evaluates (``BudgetedRun``, a base of ``charlm.trainer.Trainer``):
the step budget (--max-steps / --max-epochs), the fraction of the budget used, whether one more step
and the final evaluation still fit in --max-time (the final evaluation estimated from the last one),
whether an evaluation is due on its cadence, and the time left."""

from __future__ import annotations

import math

from .config import TrainConfig


class BudgetedRun:
    """The Trainer's budget decisions (it provides cfg, spec, streams, step, session_start, now, val,
    last_eval, elapsed, log, _val_size)."""

    def _budget_steps(self, cfg: TrainConfig | None = None) -> int:
        """Total optimizer steps the budget allows (0 = unbounded by steps)."""
        cfg, wpe = cfg or self.cfg, self.streams.windows_per_epoch
        cands = []
        if cfg.max_steps:
            cands.append(cfg.max_steps)
        if cfg.max_epochs:
            cands.append(int(math.ceil(cfg.max_epochs * wpe)))
        return min(cands) if cands else 0

    def _progress(self, cfg: TrainConfig, total: int) -> float | None:
        """Fraction of the budget used: steps when a step budget applies, else time."""
        if total:
            return self.step / total
        return self.now / cfg.max_time if cfg.max_time else None

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

    def _eta(self, total: int, cps: float) -> float | None:
        cands = []
        if total and cps > 0:
            cands.append((total - self.step) * self.cfg.batch_size * self.cfg.seq_len / cps)
        if self.cfg.max_time:
            cands.append(self.cfg.max_time - self.elapsed)
        return min(cands) if cands else None
