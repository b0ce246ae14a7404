"""Start-up: time from launching `charlm train` to its first step, cold and warm, and `charlm sample`.

    python bench/bench_startup.py                 # default model (lstm 2x384) on stdlib, 1 step
    python bench/bench_startup.py --cell gru --reps 3
    python bench/bench_startup.py --no-warmup     # also the cold start without the helper processes

Cold = a fresh, empty NUMBA_CACHE_DIR (every kernel compiles; the compile helpers forced on with
CHARLM_WARMUP=1, "no helpers" with CHARLM_WARMUP=0); warm = the same directory again.
"before step 1 done" is the wall time from launching the process to the moment it prints its
step-1 line (imports, corpus setup, kernel compilation or cache load, the step itself); "CPU" is
the user+system time of the process and its children (the helper processes that compile the
kernels on a cold start), which the machine's other load inflates much less than wall time.
`charlm sample` is timed to exit on a warm cache (200 characters), median of --reps.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def timed_train(argv: list[str], env: dict) -> tuple[float, float, float]:
    """(seconds to the step-1 line, seconds to exit, CPU seconds of the process tree)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    first = None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if first is None and line.startswith("step 1"):
            first = time.perf_counter() - t0
    rc = p.wait()
    total = time.perf_counter() - t0
    if rc != 0 or first is None:
        sys.exit(f"charlm train failed (rc {rc}):\n{''.join(lines)}")
    return first, total, _children_cpu() - cpu0


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run to exit."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return time.perf_counter() - t0, _children_cpu() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--cell", default=None, help="cell (default: charlm's default)")
    ap.add_argument("--reps", type=int, default=5, help="warm repetitions (median)")
    ap.add_argument("--no-warmup", action="store_true", help="also measure the cold start with CHARLM_WARMUP=0")
    args = ap.parse_args()
    cli = [sys.executable, "-m", "charlm.cli"]
    print(f"machine: {common.cpu_model()}, {os.cpu_count()} CPUs, widest SIMD {common.cpu_flags()}; "
          f"load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("cold", {"CHARLM_WARMUP": "1"})] + ([("cold, no helpers", {"CHARLM_WARMUP": "0"})]
                                                         if args.no_warmup else [])
        for label, extra in variants:
            cache = tempfile.mkdtemp(dir=tmp)
            env = {**os.environ, "NUMBA_CACHE_DIR": cache, **extra}
            run = os.path.join(tmp, "run-" + label.replace(" ", "").replace(",", "-"))
            train = cli + ["train", args.corpus, "--max-steps", "1", "--val-frac", "0.01", "--out", run]
            if args.cell:
                train += ["--cell", args.cell]
            first, total, cpu = timed_train(train, env)
            print(f"train, {label} cache: step 1 done after {first:.1f} s (exit {total:.1f} s, CPU {cpu:.1f} s)")
        warm = []
        for i in range(args.reps):
            run2 = os.path.join(tmp, f"warm{i}")
            train = cli + ["train", args.corpus, "--max-steps", "1", "--val-frac", "0.01", "--out", run2]
            if args.cell:
                train += ["--cell", args.cell]
            warm.append(timed_train(train, env))
        firsts = [w[0] for w in warm]
        print(f"train, warm cache: step 1 done after median {statistics.median(firsts):.2f} s "
              f"({', '.join(f'{x:.2f}' for x in firsts)}); CPU median {statistics.median(w[2] for w in warm):.2f} s")
        sample = cli + ["sample", run, "--length", "200", "--seed", "1"]
        timed(sample, env)  # compiles the sampling kernels once
        runs = [timed(sample, env) for _ in range(args.reps)]
        times = [r[0] for r in runs]
        print(f"sample --length 200, warm cache: median {statistics.median(times):.2f} s "
              f"({', '.join(f'{x:.2f}' for x in times)}); CPU median {statistics.median(r[1] for r in runs):.2f} s")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
