"""Tokenizer throughput: encode and decode of generated mixed Korean/English text.

    python bench/bench_tokenizer.py [--mb 32] [--repeats 5]

Prints the median MB/s (MB of UTF-8 text, 1 MB = 1e6 bytes) for char and byte level,
with and without NFC normalization. Target: >= 50 MB/s for encode and decode.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from charlm.tokenizer import CharTokenizer


def mixed_text(mb: float, seed: int = 0) -> str:
    """About ``mb`` MB (UTF-8) of lines mixing English words, Hangul syllables and punctuation."""
    rng = np.random.default_rng(seed)
    english = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hum "
               "tunes about parsers kernels windows gradients and streams").split()
    hangul = ["".join(chr(0xAC00 + int(c)) for c in rng.integers(0, 11172, size=int(k)))
              for k in rng.integers(1, 5, size=400)]
    vocab = english + hangul + [",", ".", "!", "?", "\n", "😀"]
    words = [vocab[i] for i in rng.integers(0, len(vocab), size=4000)]
    block = " ".join(words)
    reps = max(1, int(mb * 1e6 / len(block.encode())))
    return block * reps


def median_rate(fn, nbytes: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return nbytes / 1e6 / statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=32.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    text = mixed_text(args.mb)
    nbytes = len(text.encode())
    print(f"text: {nbytes / 1e6:.1f} MB UTF-8, {len(text) / 1e6:.1f} M characters")
    for level, norm in (("char", None), ("byte", None), ("char", "NFC")):
        tok = CharTokenizer.from_text(text, level=level, normalize=norm)
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        enc = median_rate(lambda tok=tok: tok.encode(text), nbytes, args.repeats)
        dec = median_rate(lambda tok=tok, ids=ids: tok.decode(ids), nbytes, args.repeats)
        print(f"level={level:<4} normalize={str(norm):<4} vocab={len(tok):>6}  "
              f"encode {enc:8.1f} MB/s   decode {dec:8.1f} MB/s")


if __name__ == "__main__":
    main()
