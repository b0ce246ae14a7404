"""Corpus pipeline throughput and peak memory on a generated corpus.

    python bench/bench_corpus.py [--mb 500] [--in-memory-mb 100]

Writes ``--mb`` MB of mixed Korean/English text (4 files in a temporary directory),
then, each in a fresh subprocess so peak RSS (VmHWM) is its own:
  * streamed: ``encode_to_file`` (count pass + encode pass -> memory-mapped .npy)
  * in memory: ``read_sources`` + ``CharTokenizer.from_text`` + ``encode_corpus`` on
    ``--in-memory-mb`` MB
and prints MB/s (of UTF-8 input) and peak RSS relative to the encoded array's size.
Target for the streamed path: peak RSS <= 2x the encoded array.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np
from charlm.corpus import encode_to_file, read_sources, encode_corpus
from charlm.tokenizer import CharTokenizer

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
mode, src, out = sys.argv[1:4]
base = vm("VmRSS:")
t0 = time.perf_counter()
if mode == "stream":
    ids, tok = encode_to_file([src], out)
else:
    text = read_sources([src]).text
    tok = CharTokenizer.from_text(text)
    ids = encode_corpus(text, tok)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "peak": vm("VmHWM:"), "base": base, "ids_bytes": int(ids.nbytes),
                  "n": int(ids.size), "dtype": str(ids.dtype), "vocab": len(tok)}))
"""


def write_corpus(folder: Path, mb: float, files: int = 4) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_tokenizer import mixed_text

    block = mixed_text(8.0).encode()
    total = 0
    for i in range(files):
        with open(folder / f"part{i}.txt", "wb") as f:
            want = int(mb * 1e6 / files)
            while want > 0:
                piece = block[:want]
                if len(piece) < len(block):  # end on a whole character
                    piece = piece.decode("utf-8", "ignore").encode()
                f.write(piece)
                want -= len(block)
                total += len(piece)
    return total


def run(mode: str, src: Path, out: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def report(label: str, nbytes: int, r: dict) -> None:
    print(f"{label:<10} {nbytes / 1e6:7.1f} MB -> {r['n'] / 1e6:7.1f} M ids ({r['dtype']}, V={r['vocab']}) "
          f"in {r['seconds']:6.2f} s = {nbytes / 1e6 / r['seconds']:6.1f} MB/s; peak RSS "
          f"{r['peak'] / 1e6:7.1f} MB (start {r['base'] / 1e6:.0f} MB) = "
          f"{r['peak'] / r['ids_bytes']:.2f}x the encoded array ({r['ids_bytes'] / 1e6:.1f} MB)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=500.0)
    ap.add_argument("--in-memory-mb", type=float, default=100.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="charlm-bench-") as tmp:
        tmp = Path(tmp)
        big, small = tmp / "big", tmp / "small"
        big.mkdir()
        small.mkdir()
        n_big = write_corpus(big, args.mb)
        report("streamed", n_big, run("stream", big, tmp / "big.npy"))
        if args.in_memory_mb > 0:
            n_small = write_corpus(small, args.in_memory_mb)
            report("in-memory", n_small, run("memory", small, tmp / "unused.npy"))


if __name__ == "__main__":
    main()
