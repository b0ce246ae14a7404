"""Start-up: time from launching `charlm train` to its first step, cold and warm, and `charlm sample`.

    python bench/bench_startup.py                 # stdlib, charlm's defaults; 3 cold, 5 warm reps
    python bench/bench_startup.py --cell lstm --cold-reps 1 --reps 3
    python bench/bench_startup.py --no-warmup     # also the cold start without the compile helpers

Two training commands, both on the corpus given (default stdlib):
* "steps": `charlm train CORPUS --max-steps 1 --val-frac 0.01` (the size choice needs no calibration);
* "readme": the README's first command, `charlm train CORPUS --max-time 3m` (the size choice
  calibrates on this machine first).
Every timed run is stopped (SIGKILL to its process group) once it has printed its step-1 line.

Cold = a fresh, empty NUMBA_CACHE_DIR per rep (the compile helpers forced on with CHARLM_WARMUP=1:
the run's first steps run on the NumPy backend while they compile, see charlm.trainer; "no helpers"
with CHARLM_WARMUP=0: every kernel compiles in the run before step 1); warm = a cache that already
holds everything. "step 1 after" is the wall time from launching the process to the moment it prints
its step-1 line (imports, corpus setup, kernel compilation or cache load, calibration, the step
itself); "CPU" is the user+system time of the process and its helpers, which the machine's other
load inflates much less than wall time (on a shared machine, quote both, and the load). `charlm
sample --length 200` on a warm cache: time to its first character on stdout, and to exit. Medians
over the reps; every rep is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_train(argv: list[str], env: dict, stop_after_first: bool = False) -> tuple[float, float]:
    """(seconds to the step-1 line, CPU seconds of the process tree up to then when ``stop_after_first``:
    the run is killed right after that line)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    first, lines = None, []
    for line in p.stderr:
        lines.append(line)
        if line.startswith("step 1 ") or line.startswith("step 1/"):
            first = time.perf_counter() - t0
            if stop_after_first:
                os.killpg(p.pid, signal.SIGKILL)
                break
    p.stderr.close()
    rc = p.wait()
    if first is None or (rc != 0 and not stop_after_first):
        sys.exit(f"charlm train failed (rc {rc}):\n{''.join(lines)}")
    return first, _children_cpu() - cpu0


def timed_sample(argv: list[str], env: dict) -> tuple[float, float, float]:
    """(seconds to the first byte on stdout, seconds to exit, CPU seconds)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    p.stdout.read(1)
    first = time.perf_counter() - t0
    p.stdout.read()
    if p.wait() != 0:
        sys.exit(f"charlm sample failed: {argv}")
    return first, time.perf_counter() - t0, _children_cpu() - cpu0


def _med(xs) -> str:
    xs = list(xs)
    return f"{statistics.median(xs):.2f} s ({', '.join(f'{x:.2f}' for x in xs)})"


def _load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--cell", default=None, help="cell (default: charlm's default)")
    ap.add_argument("--cold-reps", type=int, default=3, help="cold repetitions per command (median)")
    ap.add_argument("--reps", type=int, default=5, help="warm repetitions (median)")
    ap.add_argument("--no-warmup", action="store_true", help="also measure the cold start with CHARLM_WARMUP=0")
    args = ap.parse_args()
    cli = [sys.executable, "-m", "charlm.cli"]
    cell = ["--cell", args.cell] if args.cell else []
    commands = {"steps": ["--max-steps", "1", "--val-frac", "0.01"], "readme": ["--max-time", "3m"]}
    print(f"machine: {common.cpu_model()}, {os.cpu_count()} CPUs, widest SIMD {common.cpu_flags()}; {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        n = iter(range(10**6))

        def train(command: str) -> list[str]:
            return cli + ["train", args.corpus, *commands[command], *cell, "--out", os.path.join(tmp, f"r{next(n)}")]

        variants = [("cold", "1")] + ([("cold, no helpers", "0")] if args.no_warmup else [])
        for label, helpers in variants:
            for command in commands:
                reps = []
                for _ in range(args.cold_reps):
                    env = {**os.environ, "NUMBA_CACHE_DIR": tempfile.mkdtemp(dir=tmp), "CHARLM_WARMUP": helpers}
                    reps.append(timed_train(train(command), env, stop_after_first=True))
                print(f"train {command}, {label} cache: step 1 after median {_med(r[0] for r in reps)}; "
                      f"CPU median {_med(r[1] for r in reps)}; {_load()}", flush=True)
        env = {**os.environ, "NUMBA_CACHE_DIR": tempfile.mkdtemp(dir=tmp)}
        run = train("steps")[-1]
        # fills the cache: no helpers, so every kernel compiles in the run, and 3 steps, since step 1 runs on
        # NumPy and the compiled kernels take over from step 2 (with helpers, when they are done)
        fill = cli + ["train", args.corpus, "--max-steps", "3", "--val-frac", "0.01", *cell, "--out", run]
        timed_train(fill, {**env, "CHARLM_WARMUP": "0"})
        for command in commands:
            timed_train(train(command), env, stop_after_first=True)  # its own kernels, if any
            reps = [timed_train(train(command), env, stop_after_first=True) for _ in range(args.reps)]
            print(f"train {command}, warm cache: step 1 after median {_med(r[0] for r in reps)}; "
                  f"CPU median {_med(r[1] for r in reps)}; {_load()}", flush=True)
        sample = cli + ["sample", run, "--length", "200", "--seed", "1"]
        timed_sample(sample, env)  # compiles the sampling kernels once
        reps = [timed_sample(sample, env) for _ in range(args.reps)]
        print(f"sample --length 200, warm cache: first character after median {_med(r[0] for r in reps)}; "
              f"exit {_med(r[1] for r in reps)}; CPU median {_med(r[2] for r in reps)}; {_load()}")


if __name__ == "__main__":
    main()
