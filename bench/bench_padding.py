"""Variable-length batches: padding to each random batch's longest text vs bucketing by length
(sorting inside shuffled chunks of 20 batches, what charlm classify/tag do). One epoch of a
bidirectional GRU classifier over texts of 5..200 characters, both orders interleaved.

    python bench/bench_padding.py [--texts 1500] [--hidden 64] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1500)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    from charlm.trainsetup import set_threads

    set_threads(a.threads)
    from charlm.models.sequence import SeqConfig, SeqModel
    from charlm.seqtrain import batch_order, pad_batch

    rng = np.random.default_rng(0)
    seqs = [rng.integers(2, 40, rng.integers(5, 201)).astype(np.int32) for _ in range(a.texts)]
    y = rng.integers(0, 2, a.texts)
    lens = [len(s) for s in seqs]
    m = SeqModel(SeqConfig(task="classify", vocab_size=40, num_labels=2, cell="gru", hidden=a.hidden, embed=16,
                           bidirectional=True))
    ids, tg, ln = pad_batch(seqs[:32], y[:32], "classify")
    m.train_step(ids, tg, ln)  # compile
    times = {"padding (random batches)": [], "bucketing (sorted chunks)": []}
    for _ in range(a.repeats):
        for name, chunk in (("padding (random batches)", 1), ("bucketing (sorted chunks)", 20)):
            order = batch_order(lens, 32, np.random.default_rng(1), chunk)
            pads = sum(len(b) * max(lens[i] for i in b) - sum(lens[i] for i in b) for b in order)
            t = time.perf_counter()
            for b in order:
                ids, tg, ln = pad_batch([seqs[i] for i in b], y[b], "classify")
                m.train_step(ids, tg, ln)
            times[name].append((time.perf_counter() - t, pads / sum(lens)))
    for name, v in times.items():
        best = min(v)
        print(f"{name:28s} epoch {best[0]:7.2f} s   padding {100 * best[1]:5.1f}% of the real characters")


if __name__ == "__main__":
    main()
