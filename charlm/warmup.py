"""First-ever start: compile a run's CPU kernels in two background processes.

Numba compiles one function at a time per process (a global compiler lock), and a cold
training step needs ~13 kernels (~20 s of CPU on a Zen 3 core). So when the kernel cache
holds nothing for the run's cell, ``charlm train`` starts two helper processes before it
reads the corpus; each runs a small copy of the run's model (same cell, layers, embedding,
hidden size, batch, optimizer and thread count, a 2-step window) and so compiles into the
shared per-user cache (``charlm.kernelcache``):

* ``forward``: ``model.loss`` (embedding, cell forward, head, cross-entropy), what evaluation
  needs too;
* ``backward``: ``train_step`` and the optimizer, with every kernel that ``model.loss`` calls
  skipped (recorded first, then never compiled here), so the two share the work instead of
  both compiling the forward.

The trainer waits for both before its first step, which then loads every kernel from the
cache. Nothing depends on the helpers: if one fails or is killed, the trainer compiles what
is missing itself. The helpers start only when a core is idle (CPUs minus the load average >= 1);
``CHARLM_WARMUP=1`` starts them regardless, ``CHARLM_WARMUP=0`` never.

Run as ``python -m charlm.warmup ROLE JSON`` (internal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from . import kernelcache

ROLES = ("forward", "backward")


def idle_cores() -> float:
    """CPUs this process may use minus the 1-minute load average (inf where the load is unknown)."""
    try:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return n - os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("inf")


def wanted(cell: str, device: str) -> bool:
    """Start helpers? Only for the CPU, with a kernel cache that holds nothing for ``cell`` yet, and
    with a core to spare: on a machine whose cores are all busy, two more compiling processes only
    add their start-up cost (measured: +3 s of CPU, and a later first step)."""
    if device != "cpu" or os.environ.get("CHARLM_WARMUP", "1") == "0" or kernelcache.DIR is None:
        return False
    if any(os.path.basename(p).startswith(f"{cell}.") for p in kernelcache.files()):
        return False
    return os.environ.get("CHARLM_WARMUP") == "1" or idle_cores() >= 1.0


class Warmup:
    """The helper processes of one run."""

    def __init__(self, procs: list):
        self.procs = procs

    def wait(self, timeout: float = 600.0) -> bool:
        """Wait for the helpers; True when all succeeded. A helper still running after ``timeout``
        is stopped (the trainer then compiles what is missing)."""
        ok = True
        for p in self.procs:
            try:
                ok = p.wait(timeout) == 0 and ok
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                ok = False
        self.procs = []
        return ok

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs = []


def start(model_options: dict, train_cfg, device: str) -> Warmup | None:
    """Start the helpers for a run, or None when the cache is warm (or helpers are off)."""
    from .config import ModelConfig

    model = ModelConfig(vocab_size=64, **model_options)
    if not wanted(model.cell, device):
        return None
    payload = json.dumps({"model": model.to_dict(), "train": train_cfg.to_dict()})
    procs = []
    for role in ROLES:
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "charlm.warmup", role, payload],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        except OSError:
            break
    return Warmup(procs) if procs else None


def _skipping(dispatchers: set | None, record: set | None):
    """Patch Numba's compile-on-first-call: a charlm kernel in ``dispatchers`` (or any, when
    ``record`` is given: then it is recorded) is neither compiled nor run. Returns an undo."""
    from numba.core.dispatcher import Dispatcher

    real = Dispatcher._compile_for_args
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep

    def compile_for_args(self, *args, **kws):
        mine = os.path.abspath(self.py_func.__code__.co_filename).startswith(package)
        if mine and record is not None:
            record.add(self)
            return lambda *a, **k: 0.0
        if mine and self in dispatchers:
            return lambda *a, **k: 0.0
        return real(self, *args, **kws)

    Dispatcher._compile_for_args = compile_for_args
    return lambda: setattr(Dispatcher, "_compile_for_args", real)


def run(role: str, model_cfg: dict, train_cfg: dict) -> None:
    import numpy as np

    from .config import ModelConfig, TrainConfig
    from .model import CharLM
    from .optim import Optimizer
    from .trainsetup import set_threads

    mcfg, tcfg = ModelConfig.from_dict(model_cfg), TrainConfig.from_dict(train_cfg)
    set_threads(tcfg.threads)
    model = CharLM(mcfg, seed=0)
    B, T = tcfg.batch_size, 2
    rng = np.random.default_rng(0)
    x = rng.integers(0, mcfg.vocab_size, size=(T, B)).astype(np.int32)
    y = rng.integers(0, mcfg.vocab_size, size=(T, B)).astype(np.int32)
    state = model.init_state(B)
    if role == "forward":
        model.loss(x, y, state)
        return
    forward: set = set()
    undo = _skipping(None, forward)
    try:
        model.loss(x, y, state)  # records the forward's kernels without compiling them
    finally:
        undo()
    undo = _skipping(forward, None)
    try:
        model.train_step(x, y, state, np.random.default_rng(0) if mcfg.dropout > 0 else None)
        opt = Optimizer(tcfg, model)
        opt.clip()
        model.backend.scale_(model.grad_flat, 1.0)  # clip-norm's rescale, which tiny gradients never reach
        opt.step(tcfg.lr)
    finally:
        undo()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ROLES:
        print("usage: python -m charlm.warmup {forward|backward} JSON (internal)", file=sys.stderr)
        return 2
    cfg = json.loads(argv[1])
    run(argv[0], cfg["model"], cfg["train"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
