"""Data-parallel training over MPI: 1 rank x 2 threads vs 2 ranks x 1 thread on this machine, the time of
one gradient all-reduce against the step time, and a written-down projection to 64 ranks on 4 hosts.

    python bench/bench_mpi.py                     # M-lstm and L-lstm, 20 timed steps each (~3 min)
    python bench/bench_mpi.py --configs L-lstm --steps 40

Needs the `mpi` extra (mpi4py + mpich). Each measurement is a worker process (this file with
``--worker``) that runs exactly what the trainer runs per step: ``CharLM.train_step`` on its share of
the streams, ``distributed.allreduce_grads``, ``Optimizer.clip`` and ``Optimizer.step``; the median of
the timed steps is reported, after warm-up steps (compilation excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIGS = {  # name -> (cell, layers, hidden, batch, window)
    "S-lstm": ("lstm", 1, 128, 32, 64),
    "M-lstm": ("lstm", 2, 256, 64, 100),
    "L-lstm": ("lstm", 2, 512, 64, 100),
}


def worker(args) -> None:
    import numpy as np
    from common import corpus_ids

    from charlm import distributed
    from charlm.config import ModelConfig, TrainConfig
    from charlm.model import CharLM
    from charlm.optim import Optimizer
    from charlm.trainsetup import set_threads

    cell, layers, hidden, B, T = CONFIGS[args.config]
    w = distributed.world()
    set_threads(args.threads)
    mcfg = ModelConfig(vocab_size=65, cell=cell, layers=layers, hidden=hidden, embed=64, dropout=0.0)
    tcfg = TrainConfig(batch_size=B, seq_len=T)
    model = CharLM(mcfg, seed=0)
    opt = Optimizer(tcfg, model)
    lo, hi = distributed.shard(B, w)
    ids = corpus_ids(B * T * (args.steps + args.warmup + 1) + 1)
    state = model.init_state(hi - lo)
    step_t, reduce_t = [], []
    for k in range(args.warmup + args.steps):
        chunk = ids[k * B * T:(k + 1) * B * T + 1]
        x = np.ascontiguousarray(chunk[:-1].reshape(B, T).T[:, lo:hi], dtype=np.int32)
        y = np.ascontiguousarray(chunk[1:].reshape(B, T).T[:, lo:hi], dtype=np.int32)
        w.barrier()
        t0 = time.perf_counter()
        _, state = model.train_step(x, y, state, None)
        t1 = time.perf_counter()
        distributed.allreduce_grads(w, model)
        t2 = time.perf_counter()
        opt.clip()
        opt.step(tcfg.lr)
        t3 = time.perf_counter()
        if k >= args.warmup:
            step_t.append(t3 - t0)
            reduce_t.append(t2 - t1)
    if w.is_root:
        med = statistics.median(step_t)
        print(json.dumps({"config": args.config, "ranks": w.size, "threads": args.threads,
                          "params": int(model.size), "step_s": med, "allreduce_s": statistics.median(reduce_t),
                          "chars_per_s": B * T / med}))


def run(config: str, ranks: int, threads: int, steps: int, warmup: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--config", config, "--threads", str(threads),
           "--steps", str(steps), "--warmup", str(warmup)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    env = dict(os.environ, HYDRA_LAUNCHER="fork", FI_PROVIDER="tcp")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def projection(r: dict) -> str:
    """Weak scaling to 4 hosts x 16 ranks over 10 GbE: each rank keeps the shard it had here (B / 2 streams),
    so the global batch grows to 64 x B / 2; the step time is the 2-rank step measured here (no scaling)."""
    size = r["params"] * 4                            # bytes of float32 gradients
    bw, lat = 10e9 / 8 * 0.8, 30e-6                   # 10 GbE at 80% of line rate; 30 us per message
    hosts = 4
    inter = 2 * (hosts - 1) / hosts * size / bw + 2 * (hosts - 1) * lat   # ring between the hosts
    intra = 2 * size / 20e9                           # reduce + broadcast inside a host, ~20 GB/s memory
    comm = inter + intra
    step = r["step_s"] - r["allreduce_s"]              # compute part of the measured 2-rank step
    eff = step / (step + comm)
    per = CONFIGS[r["config"]][3] // r["ranks"]
    return (f"{r['config']}: P = {r['params']:,} -> {size / 1e6:.1f} MB of gradients; inter-host ring "
            f"2*(4-1)/4*{size / 1e6:.1f} MB / {bw / 1e9:.2f} GB/s + 6*30us = {inter * 1e3:.1f} ms; intra-host "
            f"{intra * 1e3:.1f} ms; a rank's step at {per} streams = {step * 1e3:.0f} ms (measured here) -> "
            f"efficiency {step:.3f}/({step:.3f}+{comm:.3f}) = {eff:.0%}, i.e. ~{64 * eff:.0f}x one rank's "
            f"throughput at a global batch of {64 * per} streams (no overlap of the all-reduce with the backward "
            "pass assumed; on ONE 2-core host, threads beat ranks: see the table)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", default="M-lstm", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--configs", default="M-lstm,L-lstm")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    from common import cpu_flags, cpu_model, load_avg

    print(f"machine: {cpu_model()} | {cpu_flags()} | load {load_avg()}")
    print(f"{'config':8} {'layout':16} {'chars/s':>9} {'step ms':>8} {'allreduce ms':>13} {'share':>6}")
    rows = []
    for name in args.configs.split(","):
        for ranks, threads in ((1, 2), (2, 1), (1, 1)):
            r = run(name, ranks, threads, args.steps, args.warmup)
            rows.append(r)
            print(f"{name:8} {f'{ranks} rank x {threads} thr':16} {r['chars_per_s']:9,.0f} {r['step_s'] * 1e3:8.1f} "
                  f"{r['allreduce_s'] * 1e3:13.2f} {r['allreduce_s'] / r['step_s']:6.1%}", flush=True)
    print("\nprojection to 64 ranks on 4 hosts over 10 GbE:")
    for r in rows:
        if r["ranks"] == 2:
            print(" ", projection(r))


if __name__ == "__main__":
    main()
