"""Optimizer state and learning-rate schedules (host side).

The updates themselves run in the backend as fused passes over the model's flat
parameter and gradient buffers (``adam_step`` etc.), so one optimizer step is a
handful of kernel calls whatever the number of tensors. State buffers are flat
arrays of the same length, saved in resume checkpoints under ``opt.<name>``.
"""

from __future__ import annotations

import math

from .config import TrainConfig

RMSPROP_ALPHA = 0.99  # RMSprop's smoothing constant: PyTorch's default
# optimizer -> names of its flat state buffers
STATE_BUFFERS = {"adam": ("m", "v"), "adamw": ("m", "v"), "sgd": ("buf",), "rmsprop": ("sq", "buf")}


class Optimizer:
    """Adam, AdamW, SGD (momentum) or RMSprop over one flat parameter buffer."""

    def __init__(self, cfg: TrainConfig, model):
        self.cfg = cfg
        self.model = model
        self.step_count = 0
        self.state = {k: self.backend.zeros(model.size, model.dtype) for k in STATE_BUFFERS[cfg.optimizer]}

    @property
    def backend(self):
        return self.model.backend  # the model's, also after it switched backends (CharLM.use_backend)

    def clip(self) -> float:
        """Clip gradients in place (value, then global norm); return the pre-clip global norm."""
        be, g, cfg = self.backend, self.model.grad_flat, self.cfg
        if cfg.clip_value > 0:
            be.clip_value_(g, cfg.clip_value)
        norm = math.sqrt(be.grad_sumsq(g))
        if cfg.clip_norm > 0 and norm > cfg.clip_norm:
            be.scale_(g, cfg.clip_norm / (norm + 1e-6))
        return norm

    def step(self, lr: float) -> None:
        be, cfg, p, g, s = self.backend, self.cfg, self.model.flat, self.model.grad_flat, self.state
        self.step_count += 1
        t = self.step_count
        if cfg.optimizer in ("adam", "adamw"):
            be.adam_step(p, g, s["m"], s["v"], lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay,
                         cfg.optimizer == "adamw", t)
        elif cfg.optimizer == "sgd":
            be.sgd_step(p, g, s["buf"], lr, cfg.momentum, cfg.weight_decay, t)
        else:
            be.rmsprop_step(p, g, s["sq"], s["buf"], lr, RMSPROP_ALPHA, cfg.eps, cfg.momentum, cfg.weight_decay, t)

    def tensors(self) -> dict:
        return {f"opt.{k}": self.backend.to_host(v) for k, v in self.state.items()}

    def load(self, tensors: dict, step_count: int) -> None:
        for k, v in self.state.items():
            v[:] = self.backend.to_device(tensors[f"opt.{k}"])
        self.step_count = step_count


def learning_rate(cfg: TrainConfig, step: int, total_steps: int | None, progress: float | None = None) -> float:
    """LR for optimizer step ``step`` (0-based): linear warmup, then constant, cosine or step decay.

    Cosine decays from ``lr`` to ``lr_min`` over ``total_steps`` (the --max-steps budget, or the
    steps that --max-epochs implies). With only a --max-time budget, ``progress`` (the fraction of
    the time budget used) drives the decay instead; such a schedule depends on the machine's speed,
    so it is not bit-reproducible across resumes. Without either it stays constant after warmup.
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "step":
        return cfg.lr * cfg.lr_gamma ** (step // cfg.lr_step_size)
    if cfg.lr_schedule == "cosine" and (total_steps or progress is not None):
        if total_steps:
            frac = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        else:
            frac = progress
        frac = min(1.0, max(0.0, frac))
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1.0 + math.cos(math.pi * frac))
    return cfg.lr
