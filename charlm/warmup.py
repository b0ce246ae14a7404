"""First-ever start: compile a run's CPU kernels in helper processes, biggest first, while it trains.

Numba compiles one function at a time per process (a global compiler lock), and a cold
training step needs ~13 kernels (~15-30 s of CPU). So when the kernel cache holds nothing for
the run's cell, ``charlm train`` starts helper processes before it reads the corpus (one per
idle core beyond its own, at least one when half a core is idle, at most ``MAX_HELPERS``) and
does not wait for them: it trains on the NumPy backend (``charlm.backends.numpy``) and switches
to the compiled kernels at the first step after ``Warmup.ready`` (``charlm.trainer``). Every helper:

1. builds a small copy of the run's model (same cell, layers, embedding, hidden size, batch,
   optimizer and thread count, a 2-step window) and walks one evaluation (``model.loss``) and one
   training step with clipping and the optimizer step, with Numba's compile-on-first-call
   patched to *record* each charlm kernel and its argument types instead of compiling or
   running it (``_recording``): the list of kernels the run needs, in the same order everywhere;
2. sorts that list by an estimate of compile cost, biggest first (``cost``: bytecode size, three
   times that for parallel kernels, callees included), so that the last kernels to finish are small;
3. takes the kernels one at a time by creating a claim file (``O_EXCL``) in a directory shared
   by the run's helpers, and compiles each one it claims into the shared per-user cache
   (``charlm.kernelcache``);
4. says it is done with a marker file, lowers its priority and compiles, the same way, the kernels
   ``charlm sample`` calls, so that sampling right after the run (the README's first command)
   finds them in the cache; the trainer stops the helpers when the run ends.

So no kernel compiles twice and the work splits by whatever each process manages. Nothing depends
on the helpers: if one fails or is killed, the trainer compiles what is missing at its first
compiled step. The helpers start only when a core is idle (``idle_cores``: the idle share of the
CPU time over 0.25 s, half a core idle is enough); ``CHARLM_WARMUP=1`` starts one regardless,
``CHARLM_WARMUP=0`` none (then the kernels compile in the trainer before step 1).

Run as ``python -m charlm.warmup CLAIMS_DIR JSON`` (internal; ``start`` runs ``helper_command``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from . import kernelcache

MAX_HELPERS = 3
PARALLEL_COST = 3  # a parallel kernel's compile (outer function, gufunc, scheduling) vs its bytecode size


SAMPLE_SECONDS = 0.25  # how long idle_cores watches /proc/stat (only a cold cache pays it)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, None where there is none."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu" or len(fields) < 5:
        return None
    ticks = [int(x) for x in fields[1:9]]
    return ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)  # idle + iowait


def idle_cores(sample: float = SAMPLE_SECONDS) -> float:
    """Idle CPUs now, as far as this process may use them: the idle share of the machine's CPU time
    over the next ``sample`` seconds (Linux's /proc/stat) times the CPUs this process may run on;
    elsewhere, those CPUs minus the 1-minute load average (inf where neither is known).

    Not the load average alone: it lags by a minute, so right after ``pip install`` (the README's
    first command) or another run it still counted busy cores that were idle, and the helpers did
    not start (seen: a cold first step 31 s after the corpus instead of ~16)."""
    try:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    except OSError:
        n = os.cpu_count() or 1
    a = _cpu_times()
    if a is not None:
        time.sleep(sample)
        b = _cpu_times()
        if b is not None and b[1] > a[1]:
            share = (b[0] - a[0]) / (b[1] - a[1])
            return min(n, share * (os.cpu_count() or n))
    try:
        return n - os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("inf")


def helpers(cell: str, device: str) -> int:
    """How many helper processes to start (0: none): only for the CPU, with a kernel cache that holds
    nothing for ``cell`` yet, and with half a core to spare: on a machine whose cores are all busy, more
    compiling processes only add their start-up cost (measured: +3 s of CPU, and a later first step).
    Half, not one: the trainer trains on NumPy meanwhile, so without a helper its kernels compile
    before step 1, and on 2 cores right after ``pip install`` the sample once read just under 1.0
    (the README's first command then compiled 25 s before its first step)."""
    if device != "cpu" or os.environ.get("CHARLM_WARMUP", "1") == "0" or kernelcache.DIR is None:
        return 0
    if any(os.path.basename(p).startswith(f"{cell}.") for p in kernelcache.files()):
        return 0
    idle = idle_cores()
    if idle < 0.5:
        return 1 if os.environ.get("CHARLM_WARMUP") == "1" else 0
    return int(max(1, min(MAX_HELPERS, idle - 1.0)))  # the trainer trains meanwhile


def wanted(cell: str, device: str) -> bool:
    """Start helpers at all?"""
    return helpers(cell, device) > 0


class Warmup:
    """The compile helpers of one run."""

    def __init__(self, procs: list, claims: str):
        self.procs, self.claims = procs, claims

    def ready(self) -> bool:
        """True once every helper is done with the training kernels (it says so with a marker file, or
        has exited), without waiting: they are in the cache, and the trainer may switch from the NumPy
        backend to the compiled one (a kernel a failed helper left out compiles at its first call). The
        helpers go on with the sampler's kernels; ``stop`` at the end of the run ends them."""
        if not self.claims:
            return True
        return all(p.poll() is not None or os.path.exists(_trained_marker(self.claims, p.pid)) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs = []
        self._clean()

    def _clean(self) -> None:
        if self.claims:
            shutil.rmtree(self.claims, ignore_errors=True)
            self.claims = None


def one_blas_thread():
    """While helpers compile, the trainer runs the NumPy backend on one core: NumPy's BLAS on one
    thread. With two, beside the compiling helper, a cold 1-minute run of a gru 1x128 trained at 20-22k
    chars/s; with one, a gru 1x256 (twice the work per character) at 31k (Xeon AVX-512, 2 cores).
    Returns the limit (``restore_original_limits()``)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def helper_command(*args: str) -> list[str]:
    """The helper's command line: this very charlm's ``warmup.main(args)``.

    Not ``python -m charlm.warmup``: that puts the working directory first on sys.path, so run in a
    clone of the sources (the README's first command) the helper imported the clone's charlm, not
    the installed one, and compiled into that copy's cache folder: the trainer found nothing in its
    own and compiled everything again after its helper was done (seen: 24 s in-process, twice)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder that holds this charlm
    code = (f"import sys; sys.path.insert(0, {root!r}); from charlm.warmup import main; "
            "sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *args]


def start(model_options: dict, train_cfg, device: str) -> Warmup | None:
    """Start the helpers for a run, or None when the cache is warm (or helpers are off)."""
    from .config import ModelConfig

    model = ModelConfig(vocab_size=64, **model_options)
    n = helpers(model.cell, device)
    if not n:
        return None
    payload = {"model": model.to_dict(), "train": train_cfg.to_dict()}
    try:
        claims = tempfile.mkdtemp(prefix="claims-", dir=kernelcache.DIR)
    except OSError:
        return None
    procs = []
    for _ in range(n):
        try:
            procs.append(subprocess.Popen(helper_command(claims, json.dumps(payload)),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        except OSError:
            break
    return Warmup(procs, claims)


def _recording(calls: dict):
    """Patch Numba's compile-on-first-call: a charlm kernel is neither compiled nor run; its first call
    per argument types is recorded in ``calls`` (key -> (dispatcher, args)). Returns an undo."""
    from numba.core.dispatcher import Dispatcher

    real = Dispatcher._compile_for_args
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep

    def compile_for_args(self, *args, **kws):
        if not os.path.abspath(self.py_func.__code__.co_filename).startswith(package):
            return real(self, *args, **kws)
        key = f"{self.py_func.__module__}.{self.py_func.__qualname__}{tuple(self.typeof_pyval(a) for a in args)}"
        calls.setdefault(key, (self, args))
        return lambda *a, **k: 0.0

    Dispatcher._compile_for_args = compile_for_args
    return lambda: setattr(Dispatcher, "_compile_for_args", real)


def cost(dispatcher, seen: set | None = None) -> int:
    """Compile-cost estimate for the order of work: bytecode size (times PARALLEL_COST for a parallel
    kernel), plus that of the kernels it calls, which compile with it."""
    from numba.core.dispatcher import Dispatcher

    seen = set() if seen is None else seen
    seen.add(dispatcher)
    fn = dispatcher.py_func
    total = len(fn.__code__.co_code) * (PARALLEL_COST if dispatcher.targetoptions.get("parallel") else 1)
    for name in fn.__code__.co_names:
        callee = fn.__globals__.get(name)
        if isinstance(callee, Dispatcher) and callee not in seen:
            total += cost(callee, seen)
    return total


def claim(claims: str, key: str) -> bool:
    """True for exactly one of the workers that ask for ``key``."""
    path = os.path.join(claims, hashlib.sha1(key.encode()).hexdigest()[:20])
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        return False


def exercise(model, mcfg, tcfg) -> None:
    """One evaluation and one training step with clipping and the optimizer: every kernel a run calls."""
    import numpy as np

    from .optim import Optimizer

    B, T = tcfg.batch_size, 2
    rng = np.random.default_rng(0)
    x = rng.integers(0, mcfg.vocab_size, size=(T, B)).astype(np.int32)
    y = rng.integers(0, mcfg.vocab_size, size=(T, B)).astype(np.int32)
    model.loss(x, y, model.init_state(B))
    model.train_step(x, y, model.init_state(B), np.random.default_rng(0) if mcfg.dropout > 0 else None)
    opt = Optimizer(tcfg, model)
    opt.clip()
    model.backend.scale_(model.grad_flat, 1.0)  # clip-norm's rescale, which tiny gradients never reach
    opt.step(tcfg.lr)


def exercise_sampling(model, mcfg) -> None:
    """What ``charlm sample`` calls: the weights rearranged, a prime consumed, tokens drawn."""
    import numpy as np

    from .backends.cpu import sample as kernels

    w = kernels.prepare(mcfg.cell, model.params, mcfg.layers, mcfg.nonlinearity == "relu")
    h = np.zeros((mcfg.layers, 1, mcfg.hidden), np.float32)  # (L, 1, H)
    c = np.zeros_like(h)
    kernels.consume(w, h, c, np.zeros(2, np.int32))
    out = np.zeros((1, 2), np.int32)  # (B, n)
    kernels.generate(w, h, c, np.zeros(1, np.int32), out, 1.0, 0, 1.0, np.random.default_rng(0))


def needed(model_cfg: dict, train_cfg: dict, sampling: bool = False) -> list:
    """(key, dispatcher, args) of every kernel a training run calls (``sampling``: that ``charlm sample``
    calls, and training does not), biggest compile first."""
    from .config import ModelConfig, TrainConfig
    from .model import CharLM
    from .trainsetup import set_threads

    mcfg, tcfg = ModelConfig.from_dict(model_cfg), TrainConfig.from_dict(train_cfg)
    set_threads(tcfg.threads)
    model = CharLM(mcfg, seed=0)
    calls: dict = {}
    undo = _recording(calls)
    try:
        exercise(model, mcfg, tcfg)
        if sampling:
            train = set(calls)
            exercise_sampling(model, mcfg)
            for key in train:
                del calls[key]
    finally:
        undo()
    order = sorted(calls.items(), key=lambda kv: -cost(kv[1][0]))
    return [(key, d, args) for key, (d, args) in order]


def work(model_cfg: dict, train_cfg: dict, claims: str, sampling: bool = False) -> int:
    """Compile every needed kernel that this worker claims; returns how many it compiled."""
    done = 0
    for key, dispatcher, args in needed(model_cfg, train_cfg, sampling):
        if claim(claims, key):
            dispatcher.compile(tuple(dispatcher.typeof_pyval(a) for a in args))
            done += 1
    return done


def _trained_marker(claims: str, pid: int) -> str:
    return os.path.join(claims, f"training-kernels-done.{pid}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or not os.path.isdir(argv[0]):
        print("usage: python -m charlm.warmup CLAIMS_DIR JSON (internal)", file=sys.stderr)
        return 2
    cfg = json.loads(argv[1])
    work(cfg["model"], cfg["train"], argv[0])
    # the training kernels are in the cache: the trainer may switch now (Warmup.ready); then the
    # sampler's, so that `charlm sample` after the run (the README's first command) loads them
    with open(_trained_marker(argv[0], os.getpid()), "w"):
        pass
    if hasattr(os, "nice"):
        os.nice(10)  # the trainer runs the compiled kernels now: this is what its gaps leave
    work(cfg["model"], cfg["train"], argv[0], sampling=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
