"""Seq2seq batching: exact-length buckets vs padded buckets of several lengths, on a built-in task.

    python bench/bench_buckets.py [--task dates:n=3000,weekday=1] [--widths 1,4,12] [--epochs 6] [--seeds 0,1]

For each bucket width (1 = one source length per batch, charlm's exact buckets; w > 1 = sources of w
consecutive lengths padded to the longest) and seed: the same model and optimizer as ``charlm seq2seq train``
(LSTM 1x64, embedding 16, general attention, batch 32, Adam with cosine decay over the whole budget, clip 5),
trained for ``--epochs`` epochs; after every epoch the held-out exact match (greedy) is measured (untimed).
Printed per width: training pairs/s (median over seeds; training steps only), batches per epoch, mean padding
(pad positions / real source characters) and the held-out exact match after each epoch, so "epochs to the
same accuracy" can be read off. One thread, BLAS on one thread (as the CLI).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402


def run(args, width: int, seed: int):
    from charlm.config import TrainConfig
    from charlm.optim import Optimizer, learning_rate
    from charlm.pairs import buckets, build_vocabs, encode_pairs, read_pairs
    from charlm.seq2seq import Seq2Seq, Seq2SeqConfig
    from charlm.seq2seq_run import Translator

    pairs = read_pairs(args.task)
    held = read_pairs(args.held_out)
    sv, tv = build_vocabs(pairs + held)
    srcs, tgts = encode_pairs(pairs, sv, tv)
    cfg = Seq2SeqConfig(src_vocab=len(sv), tgt_vocab=len(tv), cell="lstm", layers=1, hidden=args.hidden,
                        embed=args.embed, attention="general")
    net = Seq2Seq(cfg, seed=seed)
    per_epoch = len(buckets(srcs, tgts, args.batch, 0, width))
    total = per_epoch * args.epochs
    oc = TrainConfig(lr=args.lr, clip_norm=5.0, lr_schedule="cosine", max_steps=total, seed=seed)
    opt = Optimizer(oc, net)
    tr = Translator(net, sv, tv, meta={"max_target_len": max(len(t) for _, t in pairs)})
    step, busy, pairs_done, pad, real, curve = 0, 0.0, 0, 0, 0, []
    for epoch in range(args.epochs):
        for b in buckets(srcs, tgts, args.batch, seed + epoch, width):
            t = time.perf_counter()
            net.train_step(b)
            opt.clip()
            opt.step(learning_rate(oc, step, total, None))
            busy += time.perf_counter() - t
            step += 1
            pairs_done += b.size
            real += int(b.src_len.sum())
            pad += b.src.size - int(b.src_len.sum())
        curve.append(tr.evaluate(held)["exact"])
    return {"rate": pairs_done / busy, "per_epoch": per_epoch, "pad": pad / real, "curve": curve}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="dates:n=3000,weekday=1")
    ap.add_argument("--held-out", default="dates:n=400,seed=99,weekday=1")
    ap.add_argument("--widths", default="1,4,12")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--embed", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-3)
    args = ap.parse_args(argv)
    from charlm.seq2seq_run import cores

    print(f"# {common.cpu_model()} ({common.cpu_flags()}), {common.versions()}, load {common.load_avg()}")
    print(f"# task {args.task}, held out {args.held_out}; lstm 1x{args.hidden}, embed {args.embed}, "
          f"batch {args.batch}, lr {args.lr}, {args.epochs} epochs")
    with cores(1):
        for width in map(int, args.widths.split(",")):
            res = [run(args, width, int(s)) for s in args.seeds.split(",")]
            curves = " | ".join(" ".join(f"{x:.3f}" for x in r["curve"]) for r in res)
            rate = statistics.median(r["rate"] for r in res)
            print(f"width {width:>3}: {rate:8.1f} pairs/s  {res[0]['per_epoch']:4d} batches/epoch  "
                  f"padding {res[0]['pad']:.3f}  exact per epoch (seeds {args.seeds}): {curves}", flush=True)
    print(f"# load after {common.load_avg()}")


if __name__ == "__main__":
    main()
