"""Memory estimates made before allocating, so a model or a batch that cannot fit ends in a clear
error naming the estimate (and leaves no half-made run directory), not in a MemoryError.

The estimates are deliberately simple upper-bound-ish sums of the buffers charlm allocates:

training  4 bytes per parameter for each of the weights, gradients and optimizer state buffers
          (Adam: 2, RMSprop/SGD with momentum: 1), 16 more per parameter for the cells' permuted
          copies, their gradient scratch and the tile GEMM's two packed copies, 8 per element of the
          largest tensor (the float64 draw of the initializer), 8 per parameter for a checkpoint
          being encoded (host copy and file bytes), and per window 4 bytes x T x B x
          (L x H x (2 x gates + 4) + 2 x V + E) for the cell workspaces, logits and input gradients.
sampling  per sample 4 bytes x (4 x L x H + gates x H + 2 x V + CHUNK), plus 8 bytes per generated
          token when several samples are collected before printing.
"""

from __future__ import annotations

import math
import os

from .errors import UsageError

GiB = 1 << 30
NOTICE_BYTES = 1 * GiB   # estimates above this are printed as a notice
STATE_BUFFERS = {"adam": 2, "adamw": 2, "rmsprop": 2, "sgd": 1}


def available_bytes() -> int | None:
    """Memory this process can still get: MemAvailable on Linux, else physical memory; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fmt(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / (1 << 20):.0f} MiB"


def train_bytes(model_cfg, train_cfg) -> tuple[int, int]:
    """(estimated peak bytes, parameter count) of training ``model_cfg`` with ``train_cfg``."""
    from .model import param_shapes

    shapes = param_shapes(model_cfg)
    params = sum(math.prod(s) for s in shapes.values())
    largest = max(math.prod(s) for s in shapes.values())
    buffers = 2 + STATE_BUFFERS.get(train_cfg.optimizer, 2)
    c = model_cfg
    window = 4 * train_cfg.seq_len * train_cfg.batch_size * (
        c.layers * c.hidden * (2 * c.gates + 4) + 2 * c.vocab_size + c.input_size)
    return 4 * (buffers + 4) * params + 8 * largest + 8 * params + window, params


def sample_bytes(model_cfg, num_samples: int, length: int, chunk: int = 64) -> int:
    """Estimated bytes of sampling ``num_samples`` sequences of ``length`` tokens at once."""
    c = model_cfg
    per = 4 * (4 * c.layers * c.hidden + c.gates * c.hidden + 2 * c.vocab_size + chunk)
    collected = 8 * length if num_samples > 1 else 0
    return num_samples * (per + collected)


def check(need: int, what: str, fix: str, *, notice=None) -> None:
    """``UsageError`` when ``need`` bytes exceed what is available; a notice for big (but fitting) needs."""
    have = available_bytes()
    if have is not None and need > have:
        raise UsageError(f"{what} needs about {fmt(need)} of memory, more than the {fmt(have)} available: {fix}")
    if notice is not None and need >= NOTICE_BYTES:
        notice(f"{what} needs about {fmt(need)} of memory" + (f" ({fmt(have)} available)" if have else ""))


def check_training(model_cfg, train_cfg, *, notice=None) -> None:
    need, params = train_bytes(model_cfg, train_cfg)
    check(need, f"training this model ({params:,} parameters)",
          "choose a smaller --hidden, --layers or --embed (or --batch-size / --seq-len)", notice=notice)


def check_sampling(model_cfg, num_samples: int, length: int, *, notice=None) -> None:
    check(sample_bytes(model_cfg, num_samples, length), f"sampling {num_samples:,} sequences at once",
          "lower --num-samples (or --length)", notice=notice)
