"""Quality in a wall-time budget: charlm's budget-aware defaults against PyTorch char-rnn configs.

    python bench/bench_budget.py                          # budgets 1, 3 and 10 minutes, both sides
    python bench/bench_budget.py --budgets 3 --only charlm
    python bench/bench_budget.py --cold-first            # the 1-minute charlm run from an empty kernel cache
    python bench/bench_budget.py --budgets 1,3 --only torch --grid lstm:1x256,lstm:2x256

Corpus: tiny-shakespeare, the first 90 % for training and the last 10 % for validation (both sides
split the same characters the same way). For every budget:

* **charlm**: ``charlm train CORPUS --max-time Nm --val-frac 0.1`` with nothing else, so the model
  size is what charlm chooses for that budget on this machine (the choice line is quoted); its
  --max-time counts the size calibration, the kernel compilation, evaluation and checkpoints.
  Best validation loss is read from the run's metrics.jsonl.
* **PyTorch 2.x CPU** (``torch.set_num_threads`` = the cores), the plain char-rnn recipe of a small
  grid (default lstm 1x256, 2x256, 2x384): embedding 64 -> cell -> linear, B 64, T 100, stateful
  truncated BPTT, Adam 2e-3, clip-norm 5, no dropout, constant LR. It evaluates the whole
  validation split every quarter of the budget and stops training early enough that its last
  evaluation also ends inside the budget (its best of those evaluations is reported).

Prints one row per run, then per budget charlm's best validation loss against PyTorch's best grid
point, and the machine line (``lscpu`` model name and AVX flags, load average). Numbers from a
machine with other work running are not comparable with a quiet one: the load average is printed
at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CANDIDATES = [os.path.join(HERE, "..", "..", "shared", "corpora", "tinyshakespeare.txt"),
              "/work/shared/corpora/tinyshakespeare.txt"]
GRID = "lstm:1x256,lstm:2x256,lstm:2x384"
LN2 = math.log(2.0)


def machine_line() -> str:
    model, flags = "unknown CPU", ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = " ".join(sorted(f for f in value.split() if f.startswith("avx")))
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} CPUs, flags: {flags or 'no AVX'}"


def load_avg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_charlm(corpus: str, minutes: float, extra: list[str], cold: bool = False) -> dict:
    run_dir = os.path.join(tempfile.mkdtemp(prefix="bench-budget-"), "run")
    cmd = [sys.executable, "-m", "charlm.cli", "train", corpus, "--max-time", f"{minutes:g}m",
           "--val-frac", "0.1", "--out", run_dir, *extra]
    # cold: an empty kernel cache, as a first-ever run has (the helpers compile while it trains on NumPy)
    env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(os.path.dirname(run_dir), "numba")} if cold else None
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"charlm train failed ({proc.returncode}): {' '.join(cmd)}")
    vals, steps = [], 0
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            steps = max(steps, rec.get("step", 0))
            if rec.get("val_loss") is not None:
                vals.append(rec["val_loss"])
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    m = cfg["model"]
    who = f"charlm {m['cell']} {m['layers']}x{m['hidden']}" + (f" {' '.join(extra)}" if extra else "")
    choice = cfg.get("autosize", {}).get("line", "(size given)")
    return {"who": who, "best_val": min(vals), "steps": steps, "wall": wall, "note": choice}


def run_torch(corpus: str, minutes: float, cell: str, layers: int, hidden: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    text = open(corpus, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    n = int(len(ids) * 0.9)
    train, val = torch.from_numpy(ids[:n]), torch.from_numpy(ids[n:])
    V, E, B, T = len(chars), 64, 64, 100
    rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, E)
            self.rnn = rnn_cls(E, hidden, layers)
            self.head = torch.nn.Linear(hidden, V)

        def forward(self, x, h):
            y, h = self.rnn(self.embed(x), h)
            return self.head(y), h

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    per = (len(train) - 1) // B
    xs, ys = train[: B * per].view(B, per).t(), train[1: B * per + 1].view(B, per).t()
    vp = (len(val) - 1) // B
    vx, vy = val[: B * vp].view(B, vp).t(), val[1: B * vp + 1].view(B, vp).t()

    def detach(h):
        return tuple(x.detach() for x in h) if isinstance(h, tuple) else (None if h is None else h.detach())

    def evaluate() -> float:
        net.eval()
        with torch.no_grad():
            h, tot = None, 0.0
            for t in range(0, vp, T):
                logits, h = net(vx[t:t + T], h)
                tot += torch.nn.functional.cross_entropy(logits.reshape(-1, V), vy[t:t + T].reshape(-1),
                                                         reduction="sum").item()
        net.train()
        return tot / (vp * B)

    budget = minutes * 60.0
    every = budget / 4.0
    start = time.perf_counter()
    step, best, h, eval_cost, next_eval = 0, float("inf"), None, 0.0, every
    while True:
        elapsed = time.perf_counter() - start
        # leave room for the last evaluation: as long as the last one took, or before any, a forward
        # pass over the validation split estimated as half the cost of training on as many characters
        guess = eval_cost or (elapsed / max(1, step)) * (vp * B) / (B * T) / 2
        if step and elapsed + 1.2 * guess + 0.5 >= budget:
            break
        t = (step * T) % (per - T)
        if t == 0:
            h = None
        logits, h = net(xs[t:t + T], h)
        h = detach(h)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ys[t:t + T].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        if time.perf_counter() - start >= next_eval:
            t0 = time.perf_counter()
            best = min(best, evaluate())
            eval_cost = time.perf_counter() - t0
            next_eval += every
    best = min(best, evaluate())
    return {"who": f"torch {cell} {layers}x{hidden}", "best_val": best, "steps": step,
            "wall": time.perf_counter() - start, "note": f"torch {torch.__version__}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=next((p for p in CANDIDATES if os.path.exists(p)), CANDIDATES[0]))
    ap.add_argument("--budgets", default="1,3,10", help="minutes, comma-separated (default 1,3,10)")
    ap.add_argument("--only", choices=["charlm", "torch"], help="run one side only")
    ap.add_argument("--grid", default=GRID, help=f"PyTorch configs cell:LxH (default {GRID})")
    ap.add_argument("--cold-first", action="store_true",
                    help="the first budget's charlm run starts with an empty kernel cache (a first-ever run)")
    ap.add_argument("extra", nargs="*", help="options passed to charlm train (after --)")
    args = ap.parse_args()
    if not os.path.exists(args.corpus):
        sys.exit(f"corpus not found: {args.corpus} (pass --corpus)")
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    grid = []
    for item in args.grid.split(","):
        cell, _, size = item.partition(":")
        layers, _, hidden = size.partition("x")
        grid.append((cell, int(layers), int(hidden)))
    machine = machine_line()
    print(f"machine: {machine}; load average at start {load_avg()}", flush=True)
    rows = []
    for minutes in budgets:
        if args.only != "torch":
            r = run_charlm(args.corpus, minutes, args.extra, cold=args.cold_first and minutes == budgets[0])
            rows.append((minutes, r))
            print(f"{minutes:g}m  {r['who']:28s} {r['best_val']:.4f}  ({r['note']})", flush=True)
        if args.only != "charlm":
            for cell, layers, hidden in grid:
                r = run_torch(args.corpus, minutes, cell, layers, hidden)
                rows.append((minutes, r))
                print(f"{minutes:g}m  {r['who']:28s} {r['best_val']:.4f}", flush=True)
    print(f"\n{'budget':>6s}  {'who':28s} {'val nats':>9s} {'val bpc':>8s} {'steps':>7s} {'wall s':>7s}")
    for minutes, r in rows:
        print(f"{minutes:5g}m  {r['who']:28s} {r['best_val']:9.4f} {r['best_val'] / LN2:8.3f} "
              f"{r['steps']:7d} {r['wall']:7.0f}")
    if args.only is None:
        print(f"\n{'budget':>6s}  {'charlm':>9s} {'best torch':>10s} {'charlm - torch':>15s}")
        for minutes in budgets:
            ours = min(r["best_val"] for m, r in rows if m == minutes and r["who"].startswith("charlm"))
            theirs = min(r["best_val"] for m, r in rows if m == minutes and r["who"].startswith("torch"))
            print(f"{minutes:5g}m  {ours:9.4f} {theirs:10.4f} {ours - theirs:+15.4f}")
    print(f"\nmachine: {machine}; load average at end {load_avg()}")
    print("nats/char of the last 10% of tiny-shakespeare; lower is better")


if __name__ == "__main__":
    main()
