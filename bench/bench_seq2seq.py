"""Seq2seq speed, charlm CPU vs PyTorch CPU, side by side in one run: training pairs/s, translation sentences/s.

    python bench/bench_seq2seq.py [--hidden 128] [--embed 32] [--batch 64] [--steps 30] [--reps 5] [--threads 1]

Task: dates:n=4000,weekday=1 ("Wednesday 3 March 2021" -> "2021-03-03", sources of 17-28 characters),
bucketed by source length as ``charlm seq2seq train`` does (its default --bucket-width; padded batches run
packed on the torch side, pack_padded_sequence); both sides get the same batches in the same
order. Model: LSTM encoder and decoder (1 layer), Luong general attention, tanh combine, softmax head; the torch
side is tests/test_seq2seq.py's oracle module (nn.Embedding + nn.LSTM + the same attention) loaded with charlm's
state dict. One training step: forward, backward, global-norm clip 5, Adam (lr 1e-3) on both sides.
Translation: greedy decoding of 512 held-out sources in batches of one source length (up to 256 per batch),
a fixed 10 output steps (the target length), so both sides do the same work.

Reps alternate the two sides (who goes first alternates too) after a warm-up; printed: the median rate of each
side and the median of the per-rep ratios. Threads: Numba's pool for charlm (NumPy BLAS 1 thread, as
``charlm seq2seq`` runs), torch.set_num_threads for torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import common  # noqa: E402


def setup(args):
    from charlm.corpora.pairs import dates

    from charlm.config import TrainConfig
    from charlm.optim import Optimizer
    from charlm.pairs import buckets, build_vocabs, encode_pairs
    from charlm.seq2seq import Seq2Seq, Seq2SeqConfig
    from charlm.seq2seq_run import BUCKET_WIDTH

    pairs = dates(4000, seed=0, weekday=1)
    sv, tv = build_vocabs(pairs)
    srcs, tgts = encode_pairs(pairs, sv, tv)
    w = BUCKET_WIDTH
    batches = [b for b in buckets(srcs, tgts, args.batch, 0, w) if b.size == args.batch] or buckets(
        srcs, tgts, args.batch, 0, w)
    cfg = Seq2SeqConfig(src_vocab=len(sv), tgt_vocab=len(tv), cell="lstm", layers=1, hidden=args.hidden,
                        embed=args.embed, attention="general")
    net = Seq2Seq(cfg, seed=0)
    opt = Optimizer(TrainConfig(lr=1e-3, clip_norm=5.0), net)
    test = dates(512, seed=7, weekday=1)
    tsrc, _ = encode_pairs(test, sv, tv)
    return cfg, net, opt, batches, tsrc


def charlm_train(net, opt, batches, steps):
    t = time.perf_counter()
    n = 0
    for i in range(steps):
        b = batches[i % len(batches)]
        net.train_step(b)
        opt.clip()
        opt.step(1e-3)
        n += b.size
    return n / (time.perf_counter() - t)


def by_length(tsrc):
    groups = {}
    for s in tsrc:
        groups.setdefault(len(s), []).append(s)
    out = []
    for _, g in sorted(groups.items()):
        for k in range(0, len(g), 256):
            out.append(np.ascontiguousarray(np.array(g[k:k + 256], np.int32).T))   # (S, B)
    return out


def charlm_translate(net, groups, steps=10):
    from charlm.pairs import BOS

    t = time.perf_counter()
    n = 0
    for src in groups:
        e = net.encode(src)
        state, x = (e.h0, e.c0), np.full(src.shape[1], BOS, np.int32)
        for _ in range(steps):
            logp, state, _ = net.step(e, x, state)
            x = logp.argmax(axis=1).astype(np.int32)
        n += src.shape[1]
    return n / (time.perf_counter() - t)


def torch_side(cfg, net):
    import torch
    from test_seq2seq import TorchSeq2Seq

    model = TorchSeq2Seq(cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()}, strict=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, opt


def torch_train(model, opt, batches, steps):
    import torch

    as_t = lambda a: torch.from_numpy(a.astype(np.int64))
    tb = [(as_t(b.src), as_t(b.src_len), as_t(b.tgt_in), as_t(b.tgt_out), b.size) for b in batches]
    t = time.perf_counter()
    n = 0
    for i in range(steps):
        src, sl, tin, tout, size = tb[i % len(tb)]
        opt.zero_grad(set_to_none=True)
        loss = model(src, sl, tin, tout)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        n += size
    return n / (time.perf_counter() - t)


def torch_translate(model, groups, steps=10):
    import torch

    from charlm.pairs import BOS

    t = time.perf_counter()
    n = 0
    with torch.no_grad():
        for src in groups:
            s = torch.from_numpy(src.astype(np.int64))
            enc, state = model.encoder(model.src_embed(s))              # (S, B, D)
            e = enc.transpose(0, 1)                                     # (B, S, D)
            x = torch.full((src.shape[1],), BOS, dtype=torch.int64)
            for _ in range(steps):
                out, state = model.decoder(model.tgt_embed(x)[None], state)   # (1, B, H)
                q = out.transpose(0, 1) @ model.attention.weight        # (B, 1, D)
                a = torch.softmax(q @ e.transpose(1, 2), dim=2)         # (B, 1, S)
                h = torch.tanh(model.combine(torch.cat([a @ e, out.transpose(0, 1)], dim=2)))
                x = model.head(h[:, 0]).argmax(dim=1)
            n += src.shape[1]
    return n / (time.perf_counter() - t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30, help="training steps per rep")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from charlm.seq2seq_run import cores

    print(f"# {common.cpu_model()} ({common.cpu_flags()}), {common.versions()}, load {common.load_avg()}")
    cfg, net, opt, batches, tsrc = setup(args)
    groups = by_length(tsrc)
    try:
        import torch

        torch.set_num_threads(max(1, args.threads))
        tmodel, topt = torch_side(cfg, net)
    except ImportError:
        tmodel = None
        print("# torch not importable: charlm side only")
    rates = {"charlm train": [], "torch train": [], "charlm translate": [], "torch translate": []}
    def timed_charlm(fn, *a):
        with cores(args.threads):   # charlm's thread policy for charlm's calls only (torch keeps its own)
            return fn(*a)

    def timed_torch(fn, *a):
        # starting Numba's OpenMP pool resets the process's OpenMP thread count, which torch shares
        # (measured: torch.get_num_threads() went 1 -> 2 and torch ran 15x slower); set it every time
        torch.set_num_threads(max(1, args.threads))
        return fn(*a)

    timed_charlm(charlm_train, net, opt, batches, 3)        # warm-up: compile / cache load
    timed_charlm(charlm_translate, net, groups[:1])
    if tmodel is not None:
        timed_torch(torch_train, tmodel, topt, batches, 3)
        timed_torch(torch_translate, tmodel, groups[:1])
    for rep in range(args.reps):
        order = ("charlm", "torch") if rep % 2 == 0 else ("torch", "charlm")
        for side in order:
            if side == "charlm":
                rates["charlm train"].append(timed_charlm(charlm_train, net, opt, batches, args.steps))
                rates["charlm translate"].append(timed_charlm(charlm_translate, net, groups))
            elif tmodel is not None:
                rates["torch train"].append(timed_torch(torch_train, tmodel, topt, batches, args.steps))
                rates["torch translate"].append(timed_torch(torch_translate, tmodel, groups))
    print(f"model: lstm 1x{args.hidden}, embed {args.embed}, general attention, batch {args.batch}, "
          f"threads {args.threads}; {args.reps} reps; load after {common.load_avg()}")
    for what, unit in (("train", "pairs/s"), ("translate", "sentences/s")):
        c = rates[f"charlm {what}"]
        line = f"{what:<10} charlm {statistics.median(c):10.1f} {unit}"
        if rates[f"torch {what}"]:
            t = rates[f"torch {what}"]
            ratio = statistics.median(a / b for a, b in zip(c, t, strict=True))
            line += f"   torch {statistics.median(t):10.1f} {unit}   charlm/torch {ratio:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
