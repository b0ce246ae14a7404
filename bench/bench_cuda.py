"""Training speed on a GPU: charlm's CUDA backend (and PyTorch CUDA when installed), chars/s.

    python bench/bench_cuda.py [--cell lstm] [--sizes S,M,L] [--windows 20] [--with-cpu]

One training window = forward + truncated BPTT + gradient-norm clip + Adam step over T x B
characters (V=65, E=64, dropout 0). Sizes (layers x hidden, batch B, window T):
    S  1 x 128, B=32, T=64      M  2 x 256, B=64, T=100      L  2 x 512, B=64, T=100
Each figure is the median over --windows windows after 2 warm-up windows (compilation),
with the device synchronized before every clock read. PyTorch: nn.Embedding + nn.RNN/LSTM/GRU
(cuDNN) + nn.Linear + cross-entropy + clip_grad_norm_ + Adam, the same shapes and work.
--with-cpu adds charlm's CPU backend for scale. Needs an NVIDIA GPU and the 'cuda' extra;
without one it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from charlm.backends import _cuda_usable
from charlm.config import ModelConfig, TrainConfig
from charlm.model import CharLM
from charlm.optim import Optimizer

V, E = 65, 64
SIZES = {"S": (1, 128, 32, 64), "M": (2, 256, 64, 100), "L": (2, 512, 64, 100)}


def median_rate(step, chars: int, windows: int, sync) -> float:
    for _ in range(2):
        step()
    sync()
    times = []
    for _ in range(windows):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return chars / statistics.median(times)


def charlm_rate(device: str, cell: str, layers: int, hidden: int, B: int, T: int, windows: int) -> float:
    model = CharLM(ModelConfig(vocab_size=V, cell=cell, layers=layers, hidden=hidden, embed=E), device=device)
    opt = Optimizer(TrainConfig(optimizer="adam", lr=2e-3, clip_norm=5.0), model)
    rng = np.random.default_rng(0)
    x, y = (rng.integers(0, V, (T, B)).astype(np.int32) for _ in range(2))
    state = [model.init_state(B)]

    def step():
        _, state[0] = model.train_step(x, y, state[0])
        opt.clip()
        opt.step(2e-3)

    if device == "cuda":
        from numba import cuda

        sync = cuda.synchronize
    else:
        sync = lambda: None
    return median_rate(step, T * B, windows, sync)


def torch_rate(cell: str, layers: int, hidden: int, B: int, T: int, windows: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    rnn_cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    embed, rnn, head = torch.nn.Embedding(V, E), rnn_cls(E, hidden, layers), torch.nn.Linear(hidden, V)
    mods = torch.nn.ModuleList([embed, rnn, head]).to(dev)
    opt = torch.optim.Adam(mods.parameters(), lr=2e-3)
    x = torch.randint(0, V, (T, B), device=dev)
    y = torch.randint(0, V, (T, B), device=dev)
    state = [None]

    def step():
        opt.zero_grad(set_to_none=True)
        out, st = rnn(embed(x), state[0])
        loss = torch.nn.functional.cross_entropy(head(out).reshape(T * B, V), y.reshape(T * B))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mods.parameters(), 5.0)
        opt.step()
        state[0] = tuple(s.detach() for s in st) if isinstance(st, tuple) else st.detach()
        loss.item()  # charlm returns the loss as a float too

    return median_rate(step, T * B, windows, torch.cuda.synchronize)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    ap.add_argument("--sizes", default="S,M,L", help="comma-separated subset of S, M, L")
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--with-cpu", action="store_true", help="also time charlm's CPU backend")
    a = ap.parse_args(argv)
    from charlm.backends import cpu

    cpu.configure()  # --with-cpu: the CPU kernels' thread settings, as charlm train makes them
    ok, why = _cuda_usable()
    if not ok:
        print(f"bench_cuda: no usable GPU ({why}); nothing was measured.", file=sys.stderr)
        return 1
    sizes = [s.strip().upper() for s in a.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        print(f"bench_cuda: unknown size(s) {', '.join(bad)}: choose from S, M, L", file=sys.stderr)
        return 2
    print(f"{a.cell}, V={V}, E={E}, Adam, clip 5; chars/s (median of {a.windows} windows)")
    print(f"{'size':<5}{'LxH':>9}{'B':>5}{'T':>5}{'charlm cuda':>14}{'torch cuda':>13}{'ratio':>8}"
          + (f"{'charlm cpu':>13}" if a.with_cpu else ""))
    for s in sizes:
        L, Hd, B, T = SIZES[s]
        ours = charlm_rate("cuda", a.cell, L, Hd, B, T, a.windows)
        theirs = torch_rate(a.cell, L, Hd, B, T, a.windows)
        ratio = f"{ours / theirs:8.2f}" if theirs else f"{'-':>8}"
        line = f"{s:<5}{f'{L}x{Hd}':>9}{B:>5}{T:>5}{ours:>14,.0f}" + (f"{theirs:>13,.0f}" if theirs else f"{'-':>13}")
        line += ratio
        if a.with_cpu:
            line += f"{charlm_rate('cpu', a.cell, L, Hd, B, T, max(3, a.windows // 4)):>13,.0f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
