"""Validation loss reached in a fixed wall-time budget on tiny-shakespeare.

    python bench/bench_shakespeare.py                       # charlm's defaults, 10 minutes
    python bench/bench_shakespeare.py --minutes 10 -- --cell gru --hidden 384
    python bench/bench_shakespeare.py --torch --torch-cell lstm --torch-hidden 384

charlm runs ``charlm train CORPUS --max-time Nm --val-frac 0.1`` (plus any options after ``--``);
its --max-time counts training, evaluation and checkpointing. The optional PyTorch reference is
bench_budget's (``bench_budget.run_torch``: embedding 64 -> cell -> linear, batch 64, seq 100,
Adam 2e-3, clip-norm 5, no dropout, constant LR, every core; the whole validation split evaluated
every quarter of the budget, the last evaluation inside it), one config (default lstm 2x384),
and reports its best validation loss.
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
CORPUS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "corpora", "tinyshakespeare.txt"))


def run_charlm(corpus: str, minutes: float, extra: list[str]) -> dict:
    out = tempfile.mkdtemp(prefix="bench-shakespeare-")
    run_dir = os.path.join(out, "run")
    cmd = [sys.executable, "-m", "charlm.cli", "train", corpus, "--max-time", f"{minutes}m",
           "--val-frac", "0.1", "--out", run_dir, *extra]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    vals, last = [], {}
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "val_loss" in rec:
                vals.append(rec["val_loss"])
            if "chars_per_sec" in rec:
                last = rec
    best = min(vals)
    return {"who": "charlm " + " ".join(extra), "best_val": best, "bpc": best / math.log(2), "wall": wall,
            "steps": last.get("step"), "chars_per_sec": last.get("chars_per_sec")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--torch", action="store_true", help="also train the PyTorch reference")
    ap.add_argument("--torch-cell", default="lstm")
    ap.add_argument("--torch-layers", type=int, default=2)
    ap.add_argument("--torch-hidden", type=int, default=384)
    ap.add_argument("extra", nargs="*", help="options passed to charlm train (after --)")
    args = ap.parse_args()
    if not os.path.exists(args.corpus):
        sys.exit(f"corpus not found: {args.corpus} (pass --corpus)")
    rows = [run_charlm(args.corpus, args.minutes, args.extra)]
    if args.torch:
        from bench_budget import run_torch

        r = run_torch(args.corpus, args.minutes, args.torch_cell, args.torch_layers, args.torch_hidden)
        rows.append({**r, "bpc": r["best_val"] / math.log(2)})
    print(f"\n{'who':40s} {'val nats':>9s} {'val bpc':>8s} {'steps':>7s} {'wall s':>7s}")
    for r in rows:
        print(f"{r['who']:40s} {r['best_val']:9.4f} {r['bpc']:8.3f} {r['steps'] or 0:7d} {r['wall']:7.0f}")


if __name__ == "__main__":
    main()
