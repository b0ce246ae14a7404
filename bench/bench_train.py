"""Training, evaluation and sampling speed, charlm CPU vs PyTorch CPU side by side in one run.

    python bench/bench_train.py                       all default sections (see below), ~5 min on a quiet 2-core machine
    python bench/bench_train.py --quick               3 shorter reps per row, ~2 min
    python bench/bench_train.py --sections train --configs M-lstm,L-lstm --reps 15 --verbose
    python bench/bench_train.py --sections train --sides charlm,charlm-blas   thread policy: Numba vs BLAS
    python bench/bench_train.py --sections busy-old   the old default (all threads, long spin) beside a busy process
    python bench/bench_train.py --profile M-lstm      per-phase time of charlm's training step
                                                      (M-lstm:eval, M-lstm:eval1: of an evaluation window)
    python bench/bench_train.py --startup             first-ever JIT compile and `charlm sample` start-up

Sections (each a table; first side / second side):
    train       S-lstm, M-lstm, M-gru, M-rnn, L-lstm training: charlm vs torch
    eval        M-lstm:eval (no-grad forward + summed xent, B x T windows, as the validation pass) and
                M-lstm:eval1 (B 1, windows of 256: `charlm eval --file`): charlm vs torch.no_grad()
    sample      M-lstm:sample: 64 rows generated at once vs 1 row (charlm's compiled loop; chars/s of all rows)
    busy        beside ONE busy process (`python -c "while True: pass"`, started and killed by the bench):
                M-lstm training and eval1, charlm's default (--threads 0: adapts) vs charlm pinned to 1 thread
                (the target: ratio >= 1)
    busy-torch  beside one busy process: S-lstm, M-lstm training and M-lstm:eval, charlm vs torch
    busy-old    (not by default) all threads pinned with libgomp's default spin vs 1 thread, eval1
Sides: charlm (its default: all cores, adapting to load), charlm-1t (pinned to 1 thread), charlm-pin
(pinned to all cores), charlm-old (pinned, libgomp's default spin: the behaviour before the governor),
charlm-blas (Numba 1 thread, the BLAS it calls gets the threads), charlm-b1 (sampling 1 row), torch.

One training step is what ``charlm train`` does per window: ``CharLM.train_step`` + ``Optimizer.clip``
+ ``Optimizer.step`` (Adam, lr 2e-3, clip-norm 5), hidden state carried. PyTorch does the same work:
nn.Embedding + nn.RNN/LSTM/GRU + nn.Linear + cross_entropy + backward + clip_grad_norm_ + Adam,
state carried detached, torch.set_num_threads(threads), oneDNN at its default. V=65, E=64, the
tinyshakespeare corpus when present (else random ids). Sizes (layers x hidden, batch, window):
S 1x128 B32 T64, M 2x256 B64 T100, L 2x512 B64 T100.

Each side runs in its own worker process (so its peak RSS, ru_maxrss, is its own), warmed up first
(compilation / cache load and allocator warm-up excluded; a rep's step count is set from the
warm-up pace so that a rep takes about REP_SECONDS); the parent then alternates the two workers rep
by rep (who goes first alternates too). It prints the median chars/s of each side and, as the
ratio, the median of the per-rep ratios (each pair runs back to back, so slow drifts in the
machine's load cancel; other processes on a 2-core machine still add +-5-10% noise: look at the
load printed, and repeat). GFLOP/s counts the matmul work, 3 x (sum_l 2GH(I+H) + 2HV) per character
for training, a third of it for evaluation and sampling; %peak compares with a float32 1024^3
np.dot measured in the same run at the same thread count (sampling runs on 1 thread: compare with
the 1T peak).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

ALL = "S-lstm,M-lstm,M-gru,M-rnn,L-lstm"
REP_SECONDS = 0.5                        # a timed rep runs about this long (steps set from the warm-up)
WARMUP = 3
TASKS = ("train", "eval", "eval1", "sample")
SAMPLE_ROWS = 64
LR, CLIP = 2e-3, 5.0


# ----------------------------------------------------------------------- the two training steps
def charlm_stepper(cell, L, H, B, T, threads, policy="numba"):
    """policy "numba": set_threads (what charlm train does); "blas": Numba 1 thread, BLAS ``threads``."""
    from charlm.config import ModelConfig, TrainConfig
    from charlm.model import CharLM
    from charlm.optim import Optimizer
    from charlm.trainsetup import set_threads

    set_threads(threads)
    if policy == "blas":
        import numba
        from threadpoolctl import threadpool_limits

        numba.set_num_threads(1)
        threadpool_limits(threads, user_api="blas")
    model = CharLM(ModelConfig(vocab_size=common.V, cell=cell, layers=L, hidden=H, embed=common.E), seed=0)
    opt = Optimizer(TrainConfig(optimizer="adam", lr=LR, clip_norm=CLIP), model)
    data = common.windows(B, T, 16)
    box = {"state": model.init_state(B), "k": 0}

    def step():
        x, y = data[box["k"] % len(data)]
        box["k"] += 1
        loss, box["state"] = model.train_step(x, y, box["state"])
        opt.clip()
        opt.step(LR)
        return loss

    return step, model


def torch_stepper(cell, L, H, B, T, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    emb, rnn, head = torch.nn.Embedding(common.V, common.E), cls(common.E, H, L), torch.nn.Linear(H, common.V)
    params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    data = [(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in common.windows(B, T, 16)]
    box = {"state": None, "k": 0}

    def step():
        x, y = data[box["k"] % len(data)]
        box["k"] += 1
        out, state = rnn(emb(x), box["state"])
        loss = torch.nn.functional.cross_entropy(head(out).view(-1, common.V), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        box["state"] = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        return loss.item()

    return step, None


def charlm_eval_stepper(cell, L, H, B, T, threads):
    """What evaluation does per window: CharLM.loss (no-grad forward + summed xent), state carried."""
    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.trainsetup import set_threads

    set_threads(threads)
    model = CharLM(ModelConfig(vocab_size=common.V, cell=cell, layers=L, hidden=H, embed=common.E), seed=0)
    data = common.windows(B, T, 16)
    box = {"state": model.init_state(B), "k": 0}
    # As evaluate_ids and `charlm eval` do: one scope of unchanging weights around all the windows
    # (the cells pack the weights once), held open for the worker's life (a long split).
    box["scope"] = model.frozen()
    box["scope"].__enter__()

    def step():
        x, y = data[box["k"] % len(data)]
        box["k"] += 1
        loss, _, box["state"] = model.loss(x, y, box["state"])
        return loss

    return step, model


def torch_eval_stepper(cell, L, H, B, T, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    emb, rnn, head = torch.nn.Embedding(common.V, common.E), cls(common.E, H, L), torch.nn.Linear(H, common.V)
    data = [(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in common.windows(B, T, 16)]
    box = {"state": None, "k": 0}

    def step():
        x, y = data[box["k"] % len(data)]
        box["k"] += 1
        with torch.no_grad():
            out, box["state"] = rnn(emb(x), box["state"])
            loss = torch.nn.functional.cross_entropy(head(out).view(-1, common.V), y.view(-1), reduction="sum")
        return loss.item()

    return step, None


def charlm_sample_stepper(cell, L, H, B, threads):
    """What `charlm sample --num-samples B` does per chunk: the compiled loop, B rows, CHUNK tokens each."""
    import numpy as np

    from charlm.backends.cpu import sample as kernels
    from charlm.config import ModelConfig
    from charlm.generate import CHUNK
    from charlm.model import CharLM
    from charlm.trainsetup import set_threads

    set_threads(threads)
    model = CharLM(ModelConfig(vocab_size=common.V, cell=cell, layers=L, hidden=H, embed=common.E), seed=0)
    w = kernels.prepare(cell, model.params, L)
    h = np.zeros((L, B, H), np.float32)
    c = np.zeros_like(h)
    x = np.zeros(B, np.int32)
    out = np.zeros((B, CHUNK), np.int32)
    rng = np.random.default_rng(0)

    def step():
        kernels.generate(w, h, c, x, out, 1.0, 0, 1.0, rng)
        return 0.0

    return step, None


# side -> (thread count given to set_threads, or None: the bench's --threads; extra environment)
POLICIES = {"charlm": (None, {}), "charlm-1t": (1, {}), "charlm-pin": ("all", {}),
            "charlm-old": ("all", {"GOMP_SPINCOUNT": "300000"}), "charlm-blas": (None, {}),
            "charlm-b1": (None, {}), "torch": (None, {})}


def make_stepper(side, task, size, cell, L, H, B, T, threads):
    """(step function, chars per step) of a side for a task: train, eval (B x T windows), eval1 (B=1,
    windows of 256: `charlm eval --file`) or sample (64 rows, or 1 for the side charlm-b1)."""
    all_threads = os.cpu_count() or 1
    torch_threads = threads or all_threads
    if side == "torch":
        if task == "train":
            return torch_stepper(cell, L, H, B, T, torch_threads)[0], B * T
        if task == "sample":
            raise SystemExit("the sample task compares charlm with charlm-b1 (no torch side)")
        return torch_eval_stepper(cell, L, H, B, T, torch_threads)[0], B * T
    n, _ = POLICIES[side]
    n = threads if n is None else (all_threads if n == "all" else n)
    if task == "train":
        policy = "blas" if side == "charlm-blas" else "numba"
        return charlm_stepper(cell, L, H, B, T, n, policy)[0], B * T
    if task == "sample":
        from charlm.generate import CHUNK

        B = 1 if side == "charlm-b1" else SAMPLE_ROWS
        return charlm_sample_stepper(cell, L, H, B, n)[0], B * CHUNK
    return charlm_eval_stepper(cell, L, H, B, T, n)[0], B * T


def parse_config(name):
    """'M-lstm' (training), 'M-lstm:eval', 'M-lstm:eval1' or 'M-lstm:sample' -> size, cell, L, H, B, T, task."""
    base, _, task = name.partition(":")
    size, cell = base.split("-")
    L, H, B, T = common.SIZES[size]
    task = task or "train"
    if task not in TASKS:
        raise SystemExit(f"unknown task {task!r} in {name!r}: choose one of {', '.join(TASKS)}")
    if task == "eval1":
        B, T = 1, 256
    return size, cell, L, H, B, T, task


def worker(side, config, threads):
    """Line protocol on stdin/stdout: 'ready <warm-up s>' first; 'run N' -> seconds; 'quit' -> peak RSS KB."""
    size, cell, L, H, B, T, task = parse_config(config)
    t0 = time.perf_counter()
    step, chars = make_stepper(side, task, size, cell, L, H, B, T, threads)
    first = time.perf_counter()
    step()
    first = time.perf_counter() - first
    pace = []
    for _ in range(WARMUP - 1):
        t = time.perf_counter()
        step()
        pace.append(time.perf_counter() - t)
    print(json.dumps({"ready": time.perf_counter() - t0, "first_step": first, "chars": chars,
                      "step_s": min(pace)}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "run":
            t = time.perf_counter()
            for _ in range(int(cmd[1])):
                step()
            print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)
        else:
            print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)
            return


class Worker:
    def __init__(self, side, config, threads, env=None):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, config, "--threads", str(threads)]
        env = dict(env or os.environ, **POLICIES.get(side, (None, {}))[1])
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.p.args[3:5]} died (exit {self.p.wait()})")
        return json.loads(line)

    def run(self, n):
        self.p.stdin.write(f"run {n}\n")
        self.p.stdin.flush()
        return self._read()["seconds"]

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        rss = self._read()["rss_kb"]
        self.p.wait()
        return rss / 1024.0


# ----------------------------------------------------------------------- profile (charlm only)
def profile(config, threads, steps):
    """Time every backend call of charlm's step by wrapping the backend functions the model calls."""
    size, cell, L, H, B, T, task = parse_config(config)
    if task not in ("train", "eval", "eval1"):
        raise SystemExit(f"--profile takes a training or evaluation config, not {config!r}")
    make = charlm_stepper if task == "train" else charlm_eval_stepper
    step, model = make(cell, L, H, B, T, threads)
    be, cellmod = model.backend, model.cell
    totals: dict[str, float] = {}
    names = {"embed_forward": "embed fwd", "linear_forward": "head fwd", "xent": "xent",
             "linear_backward": "head bwd", "embed_backward": "embed bwd", "grad_sumsq": "clip",
             "scale_": "clip", "adam_step": "adam"}
    originals = []

    def wrap(obj, attr, label):
        fn = getattr(obj, attr)
        originals.append((obj, attr, fn))

        def timed(*a, **k):
            t = time.perf_counter()
            r = fn(*a, **k)
            totals[label] = totals.get(label, 0.0) + time.perf_counter() - t
            return r

        setattr(obj, attr, timed)

    for attr, label in names.items():
        wrap(be, attr, label)
    for attr, label in (("input_projection", "input projection"), (f"{cell}_forward", f"{cell} fwd loop"),
                        (f"{cell}_backward", f"{cell} bwd loop"), ("backward_weights", "weight grads + dx"),
                        ("pack_weights", "permute + pack"), ("permute_rows", "permute + pack")):
        if hasattr(cellmod, attr):  # the phases inside cell.forward / cell.backward
            wrap(cellmod, attr, label)
    for _ in range(WARMUP):
        step()
    totals.clear()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    wall = time.perf_counter() - t
    for obj, attr, fn in originals:
        setattr(obj, attr, fn)
    print(f"charlm {config}, {threads} thread(s): {wall / steps * 1e3:.1f} ms per step "
          f"({B * T * steps / wall:,.0f} chars/s), mean of {steps} steps")
    for label, sec in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<24} {sec / steps * 1e3:8.2f} ms  {100 * sec / wall:5.1f}%")
    rest = wall - sum(totals.values())
    print(f"  {'other (Python, state)':<24} {rest / steps * 1e3:8.2f} ms  {100 * rest / wall:5.1f}%")


# ----------------------------------------------------------------------- start-up
def startup(threads, configs):
    """First-ever JIT compile (fresh NUMBA_CACHE_DIR) and warm-cache first step of a training run per
    config's cell; then `charlm sample` start-up (cold process, warm cache) on a tiny trained model."""
    import tempfile

    print(f"load {common.load_avg()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in configs:
            cache = os.path.join(tmp, "numba-" + name)
            os.makedirs(cache)
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            cold = _first_step(name, threads, env)
            warm = _first_step(name, threads, env)
            print(f"{name}: first step {cold['first_step']:.2f} s with an empty cache (process ready after "
                  f"{cold['ready']:.1f} s), {warm['first_step']:.2f} s with the cache warm")
        corpus = common.CORPUS
        if not os.path.exists(corpus):
            corpus = os.path.join(tmp, "corpus.txt")
            with open(corpus, "w", encoding="utf-8") as f:
                f.write("the quick brown fox jumps over the lazy dog.\n" * 2000)
        run = os.path.join(tmp, "run")
        cli = [sys.executable, "-m", "cli"]
        subprocess.run(cli + ["train", corpus, "--max-steps", "1", "--hidden", "64", "--layers", "1",
                              "--out", run], check=True, capture_output=True)
        sample = cli + ["sample", run, "-n", "200", "--seed", "1"]
        subprocess.run(sample, check=True, capture_output=True)  # warms the cache
        times = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run(sample, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        print(f"charlm sample -n 200 (cold process, warm cache): median {statistics.median(times):.2f} s "
              f"of {len(times)} ({', '.join(f'{x:.2f}' for x in times)})")
    print(f"load {common.load_avg()}")


def _first_step(name, threads, env):
    w = Worker("charlm", name, threads, env=env)
    info = w.info
    w.close()
    return info


# ----------------------------------------------------------------------- main
# (title, configs, sides, busy processes); --configs / --sides replace the training section's
SECTIONS = {
    "train": ("training", ALL, "charlm,torch", 0),
    "eval": ("evaluation: no-grad forward + summed xent (eval1 = B 1, windows of 256: charlm eval --file)",
             "M-lstm:eval,M-lstm:eval1", "charlm,torch", 0),
    "sample": (f"batch sampling: {SAMPLE_ROWS} rows at once vs 1 row (compiled loop, chars/s of all rows)",
               "M-lstm:sample", "charlm,charlm-b1", 0),
    "busy": ("beside 1 busy process (python -c 'while True: pass'): charlm's default vs pinned to 1 thread",
             "M-lstm,M-lstm:eval1", "charlm,charlm-1t", 1),
    "busy-torch": ("beside 1 busy process: charlm vs PyTorch", "S-lstm,M-lstm,M-lstm:eval", "charlm,torch", 1),
    "busy-old": ("beside 1 busy process: all threads pinned with libgomp's default spin (the old default) vs 1",
                 "M-lstm:eval1", "charlm-old,charlm-1t", 1),
}
DEFAULT_SECTIONS = "train,eval,sample,busy,busy-torch"


def busy_processes(n):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def run_section(key, title, configs, sides, busy, args, peak, threads):
    if "torch" in sides:
        try:
            import torch  # noqa: F401
        except ImportError:
            print(f"[{key}] torch is not importable: skipped")
            return
    a, b = sides[0], (sides[1] if len(sides) > 1 else None)
    print(f"\n[{key}] {title}; load {common.load_avg()}")
    A, Bn = a[:10], (b or "-")[:10]
    print(f"{'config':<13} {A + ' c/s':>14} {Bn + ' c/s':>14} {'ratio':>6} {'best':>6} {'GF':>6} {'%peak':>6} "
          f"{Bn + ' GF':>10} {A + ' MB':>10} {Bn + ' MB':>10} {'1st step s':>10}")
    hogs = busy_processes(busy)
    try:
        for name in configs.split(","):
            print(row(name, sides, args, peak, threads), flush=True)
    finally:
        for p in hogs:
            p.kill()
            p.wait()


def row(name, sides, args, peak, threads):
    size, cell, L, H, B, T, task = parse_config(name)
    a, b = sides[0], (sides[1] if len(sides) > 1 else None)
    workers = {s: Worker(s, name, args.threads) for s in sides}
    # steps per rep: about REP_SECONDS of each side's warm-up pace (at least 1)
    target = REP_SECONDS / (2 if args.quick else 1)
    steps = {s: max(1, round(target / max(w.info["step_s"], 1e-6))) for s, w in workers.items()}
    rates = {s: [] for s in sides}
    reps = 3 if args.quick else args.reps
    for r in range(reps):
        for s in (sides if r % 2 == 0 else sides[::-1]):  # alternate who goes first
            time.sleep(0.2)  # let the other side's spinning threads go to sleep
            rates[s].append(workers[s].info["chars"] * steps[s] / workers[s].run(steps[s]))
    rss = {s: workers[s].close() for s in sides}
    if args.verbose:
        for s in sides:
            print(f"  {s:>11}: " + " ".join(f"{r:,.0f}" for r in rates[s]), file=sys.stderr)
    fpc = common.flops_per_char(cell, L, H) / (1 if task == "train" else 3)   # eval/sample: forward only
    ra = statistics.median(rates[a])
    gf = ra * fpc / 1e9
    out = f"{name:<13} {ra:14,.0f} "
    if b:
        rb = statistics.median(rates[b])
        # the ratio of each rep pair (run back to back, so slow drifts in the machine's load cancel)
        ratio = statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))
        best = max(rates[a]) / max(rates[b])
        out += f"{rb:14,.0f} {ratio:6.2f} {best:6.2f} {gf:6.1f} {100 * gf / peak[threads]:5.0f}% "
        out += f"{rb * fpc / 1e9:10.1f} {rss[a]:10.0f} {rss[b]:10.0f} "
    else:
        out += f"{'-':>14} {'-':>6} {'-':>6} {gf:6.1f} {100 * gf / peak[threads]:5.0f}% {'-':>10} {rss[a]:10.0f} "
        out += f"{'-':>10} "
    return out + f"{workers[a].info['first_step']:10.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default=DEFAULT_SECTIONS,
                    help=f"which tables, comma-separated, of {', '.join(SECTIONS)} (default {DEFAULT_SECTIONS})")
    ap.add_argument("--configs", default=None,
                    help=f"the training section's SIZE-CELL[:TASK] names (default {ALL}); TASK: {', '.join(TASKS)}")
    ap.add_argument("--reps", type=int, default=9, help="timed repetitions per side (median reported)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for both sides (0 = all cores; for charlm: its default, adapting to load)")
    ap.add_argument("--quick", action="store_true", help="3 shorter reps; training S-lstm and M-lstm only")
    ap.add_argument("--sides", default=None,
                    help="the training section's sides, first / second: " + ", ".join(POLICIES) +
                         " (default charlm,torch; see the module docstring)")
    ap.add_argument("--verbose", action="store_true", help="print every rep's rate (to stderr)")
    ap.add_argument("--profile", metavar="CONFIG", help="per-phase breakdown of charlm's step for CONFIG")
    ap.add_argument("--startup", action="store_true",
                    help="first-ever JIT compile per cell (M-size configs) and `charlm sample` start-up")
    ap.add_argument("--worker", nargs=2, metavar=("SIDE", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = args.threads or os.cpu_count() or 1
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.threads)
    if args.profile:
        return profile(args.profile, threads, 20 if args.profile.startswith("S") else 5)
    if args.startup:
        return startup(threads, ["M-lstm", "M-gru", "M-rnn"])
    t_start = time.perf_counter()
    print(f"machine: {common.cpu_model()} ({common.cpu_flags()}), {os.cpu_count()} cores; threads {threads}; "
          f"load {common.load_avg()}")
    print(f"versions: {common.versions()}")
    peak = {n: common.gemm_peak(n) for n in sorted({1, threads})}
    print("GEMM peak (float32 1024^3 np.dot): " + ", ".join(f"{p:.0f} GFLOP/s at {n}T" for n, p in peak.items()))
    reps = 3 if args.quick else args.reps
    print(f"train step = train_step + clip + Adam; c/s = median of {reps} reps of ~{REP_SECONDS:g} s (warm-up "
          "excluded); ratio = median of\nthe per-rep ratios (first side / second, run back to back); best = best "
          "rep / best rep; GF = matmul GFLOP/s;\n%peak of the GEMM peak at the same thread count; MB = peak "
          "resident set of each side's process")
    for key in args.sections.split(","):
        if key not in SECTIONS:
            raise SystemExit(f"unknown section {key!r}: choose from {', '.join(SECTIONS)}")
        title, configs, sides, busy = SECTIONS[key]
        if key == "train":
            configs = args.configs or ("S-lstm,M-lstm" if args.quick else configs)
            sides = args.sides or sides
        run_section(key, title, configs, sides.split(","), busy, args, peak, threads)
    print(f"\nload after: {common.load_avg()}; {time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
