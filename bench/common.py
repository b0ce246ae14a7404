"""Shared pieces of the benchmarks: machine description, GEMM peak, corpus ids, model sizes, FLOPs."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

CORPUS = "/work/shared/corpora/tinyshakespeare.txt"
V, E = 65, 64
# name -> (layers, hidden, batch B, window T)
SIZES = {"S": (1, 128, 32, 64), "M": (2, 256, 64, 100), "L": (2, 512, 64, 100)}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> str:
    """The widest SIMD the CPU reports (avx512f, avx2 or none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return "?"
    for flag in ("avx512f", "avx2", "sse4_2"):
        if f" {flag}" in text:
            return flag
    return "none"


def versions() -> str:
    import numba
    import scipy

    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}", f"scipy {scipy.__version__}",
             f"numba {numba.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:
        parts.append("torch absent")
    return ", ".join(parts)


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def gemm_peak(threads: int, n: int = 1024, reps: int = 7) -> float:
    """Best float32 n^3 np.dot GFLOP/s with the BLAS pools limited to ``threads``."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    with threadpool_limits(threads):
        np.dot(a, b, out)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            np.dot(a, b, out)
            best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def flops_per_char(cell: str, layers: int, hidden: int, embed: int = E, vocab: int = V) -> float:
    """Training FLOPs per character: 3 x (forward matmul FLOPs), forward = sum_l 2GH(I+H) + 2HV."""
    G, H = GATES[cell], hidden
    fwd = sum(2 * G * H * ((embed if k == 0 else H) + H) for k in range(layers)) + 2 * H * vocab
    return 3.0 * fwd


def corpus_ids(n: int, vocab: int = V) -> np.ndarray:
    """n int32 ids: tinyshakespeare mapped to its sorted alphabet when present (65 symbols), else random."""
    if os.path.exists(CORPUS):
        with open(CORPUS, encoding="utf-8") as f:
            text = f.read()
        alphabet = sorted(set(text))
        if len(alphabet) <= vocab:
            lut = {ch: i for i, ch in enumerate(alphabet)}
            ids = np.fromiter((lut[ch] for ch in text[: n + 1]), np.int32)
            reps = -(-n // len(ids))
            return np.tile(ids, reps)[:n]
    return np.random.default_rng(0).integers(0, vocab, n).astype(np.int32)


def windows(B: int, T: int, count: int):
    """``count`` consecutive (x, y) windows (T, B) int32 of B contiguous streams over corpus_ids."""
    ids = corpus_ids(B * (T * count + 1))
    per = len(ids) // B
    streams = ids[: B * per].reshape(B, per)
    out = []
    for k in range(count):
        x = np.ascontiguousarray(streams[:, k * T:(k + 1) * T].T)
        y = np.ascontiguousarray(streams[:, k * T + 1:(k + 1) * T + 1].T)
        out.append((x, y))
    return out
