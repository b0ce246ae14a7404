"""Validation loss reached in a fixed wall-time budget on tiny-shakespeare.

    python bench/bench_shakespeare.py                       # charlm's defaults, 10 minutes
    python bench/bench_shakespeare.py --minutes 10 -- --cell gru --hidden 384
    python bench/bench_shakespeare.py --torch --torch-cell lstm --torch-hidden 384

charlm runs ``charlm train CORPUS --max-time Nm --val-frac 0.1`` (plus any options after ``--``);
its --max-time counts training, evaluation and checkpointing. The optional PyTorch reference
trains embedding 64 -> 2-layer cell -> linear with batch 64, seq 100, Adam 2e-3, clip-norm 5,
no dropout, constant LR, 2 threads, evaluating the whole validation split every 500 steps
inside the same budget, and reports its best validation loss.
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


def run_torch(corpus: str, minutes: float, cell: str, hidden: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(2)
    text = open(corpus, encoding="utf-8").read()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int64)
    n = int(len(ids) * 0.9)
    train, val = torch.from_numpy(ids[:n]), torch.from_numpy(ids[n:])
    V, B, T = len(chars), 64, 100
    rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, 64)
            self.rnn = rnn_cls(64, hidden, 2)
            self.head = torch.nn.Linear(hidden, V)

        def forward(self, x, h):
            y, h = self.rnn(self.embed(x), h)
            return self.head(y), h

    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    per = (len(train) - 1) // B
    xs = train[: B * per].view(B, per).t()
    ys = train[1: B * per + 1].view(B, per).t()

    def detach(h):
        return tuple(x.detach() for x in h) if isinstance(h, tuple) else (h.detach() if h is not None else None)

    def evaluate():
        with torch.no_grad():
            vp = (len(val) - 1) // B
            vx, vy = val[: B * vp].view(B, vp).t(), val[1: B * vp + 1].view(B, vp).t()
            h, tot = None, 0.0
            for t in range(0, vp, T):
                logits, h = net(vx[t:t + T], h)
                tot += torch.nn.functional.cross_entropy(logits.reshape(-1, V), vy[t:t + T].reshape(-1),
                                                         reduction="sum").item()
            return tot / (vp * B)

    start, step, best, h = time.perf_counter(), 0, float("inf"), None
    while time.perf_counter() - start < minutes * 60:
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
        if step % 500 == 0:
            best = min(best, evaluate())
    best = min(best, evaluate())
    return {"who": f"pytorch {cell} 2x{hidden}", "best_val": best, "bpc": best / math.log(2),
            "wall": time.perf_counter() - start, "steps": step, "chars_per_sec": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--torch", action="store_true", help="also train the PyTorch reference")
    ap.add_argument("--torch-cell", default="lstm")
    ap.add_argument("--torch-hidden", type=int, default=384)
    ap.add_argument("extra", nargs="*", help="options passed to charlm train (after --)")
    args = ap.parse_args()
    if not os.path.exists(args.corpus):
        sys.exit(f"corpus not found: {args.corpus} (pass --corpus)")
    rows = [run_charlm(args.corpus, args.minutes, args.extra)]
    if args.torch:
        rows.append(run_torch(args.corpus, args.minutes, args.torch_cell, args.torch_hidden))
    print(f"\n{'who':40s} {'val nats':>9s} {'val bpc':>8s} {'steps':>7s} {'wall s':>7s}")
    for r in rows:
        print(f"{r['who']:40s} {r['best_val']:9.4f} {r['bpc']:8.3f} {r['steps'] or 0:7d} {r['wall']:7.0f}")


if __name__ == "__main__":
    main()
