"""Batch-1 sampling speed: charlm's compiled loop vs PyTorch's per-character loop.

    python bench/bench_sample.py [--chars 4000] [--repeats 7] [--shapes 1x128,2x256,2x512]

LSTM, V=65, E=64, random weights, temperature 1, no top-k/top-p. charlm: the kernel
(``charlm.backends.cpu.sample.generate``) in chunks of 256 chars, state carried; also the library
path (``Model.sample``: prime handling, decoding, streaming chunks). PyTorch (when importable):
nn.Embedding + nn.LSTM + nn.Linear + softmax + multinomial, one character per step under
inference_mode, mkldnn off, best of 1 and 2 threads. Prints medians (chars/s) and ratios.
The "floor" column is the DRAM-bandwidth bound: measured copy bandwidth / weight bytes read per char
(the weights of these shapes fit in L3, so beating it is possible).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from charlm.backends.cpu import sample as K
from charlm.config import ModelConfig
from charlm.generate import Model
from charlm.model import CharLM
from charlm.tokenizer import CharTokenizer

V, E = 65, 64
CHUNK = 256


def median_rate(fn, n, repeats):
    fn(min(n, 64))  # warm up (compilation, caches)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(n)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def dram_bandwidth() -> float:
    """Bytes/s of a large numpy copy (read + write counted), best of 5."""
    a = np.ones(64 * 2**20 // 4, np.float32)   # 64 MiB, beyond L3
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * a.nbytes / (time.perf_counter() - t))
    return best


def charlm_kernel(model: CharLM):
    c = model.config
    w = K.prepare("lstm", model.state_dict(), c.layers)
    h = np.zeros((c.layers, 1, c.hidden), np.float32)
    cc = np.zeros_like(h)
    x = np.zeros(1, np.int32)
    rng = np.random.default_rng(0)

    def run(n):
        for s in range(0, n, CHUNK):
            out = np.empty((1, min(CHUNK, n - s)), np.int32)
            K.generate(w, h, cc, x, out, 1.0, 0, 1.0, rng)

    return run


def charlm_library(model: CharLM):
    alphabet = "".join(chr(i) for i in range(32, 32 + V - 1)) + "\n"
    m = Model(model, CharTokenizer.from_text(alphabet))
    return lambda n: m.sample(length=n, seed=0, prime="HELLO")


def torch_loop(model: CharLM, threads: int):
    import torch

    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(threads)
    c = model.config
    emb = torch.nn.Embedding(V, E)
    rnn = torch.nn.LSTM(E, c.hidden, c.layers)
    head = torch.nn.Linear(c.hidden, V)
    sd = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    emb.weight.data.copy_(sd["embed.weight"])
    rnn.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("rnn.")})
    head.weight.data.copy_(sd["head.weight"])
    head.bias.data.copy_(sd["head.bias"])
    gen = torch.Generator().manual_seed(0)

    def run(n):
        with torch.inference_mode():
            x = torch.zeros((1, 1), dtype=torch.long)
            state = None
            for _ in range(n):
                out, state = rnn(emb(x), state)
                probs = torch.softmax(head(out[0]) / 1.0, dim=-1)
                x = torch.multinomial(probs, 1, generator=gen).view(1, 1)

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chars", type=int, default=3000)
    ap.add_argument("--torch-chars", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--shapes", default="1x128,2x256,2x512")
    args = ap.parse_args()
    from charlm.backends import cpu

    cpu.configure()  # what the CLI and charlm.load do before the first kernel runs
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    bw = dram_bandwidth()
    print(f"DRAM copy bandwidth ~{bw / 1e9:.1f} GB/s; chars/s medians of {args.repeats}")
    print(f"{'shape':>7} {'weights MB':>10} {'floor':>8} {'kernel':>8} {'library':>8} {'torch':>8} "
          f"{'kern/floor':>10} {'kern/torch':>10}")
    for shape in args.shapes.split(","):
        L, H = (int(s) for s in shape.split("x"))
        model = CharLM(ModelConfig(vocab_size=V, cell="lstm", layers=L, hidden=H, embed=E), seed=0)
        wbytes = 4 * (4 * H * H * (2 * L - 1) + V * H + 4 * H)   # matrices + head + one table row per char
        floor = bw / wbytes
        kern = median_rate(charlm_kernel(model), args.chars, args.repeats)
        lib = median_rate(charlm_library(model), args.chars, args.repeats)
        tch = float("nan")
        if have_torch:
            tch = max(median_rate(torch_loop(model, t), args.torch_chars, args.repeats) for t in (1, 2))
        print(f"{shape:>7} {wbytes / 1e6:10.2f} {floor:8.0f} {kern:8.0f} {lib:8.0f} {tch:8.0f} "
              f"{kern / floor:10.2f} {kern / tch:10.2f}")


if __name__ == "__main__":
    main()
