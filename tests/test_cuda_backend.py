"""The CUDA backend: the simulator suite in tests/cuda (run in a subprocess, because
NUMBA_ENABLE_CUDASIM must be set before Numba is imported), and device selection without a GPU."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clihelp import run

from charlm import backends
from charlm.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def _gpu_present() -> bool:
    ok, _ = backends._cuda_usable()
    return ok


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed")
def test_cuda_backend_under_the_simulator(tmp_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/cuda", "-q", "-p", "no:cacheprovider"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-40:])
    assert r.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail, tail


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed")
def test_every_kernel_compiles_to_ptx(tmp_path):
    """Numba typing + NVVM for float32 and float64, no GPU needed; skipped without the toolkit wheels."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "cuda" / "ptx_check.py")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode == 3:
        pytest.skip("the CUDA toolkit is not installed (pip install 'numba-cuda[cu13]')")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_cuda_backend_exposes_the_cpu_names():
    pytest.importorskip("numba_cuda")
    cpu, gpu = backends.get("cpu"), backends.get("cuda")
    names = ["cells", "embed_forward", "embed_backward", "onehot", "linear_forward", "linear_backward", "xent",
             "grad_sumsq", "scale_", "clip_value_", "all_finite", "adam_step", "sgd_step", "rmsprop_step",
             "to_device", "to_host", "zeros", "empty", "mul"]
    for n in names:
        assert callable(getattr(gpu, n)) or n == "cells", n
        getattr(cpu, n)
    assert (cpu.name, gpu.name) == ("cpu", "cuda")
    for cell, G in (("rnn", 1), ("lstm", 4), ("gru", 3)):
        c, g = cpu.cells[cell], gpu.cells[cell]
        assert g.G == c.G == G
        for fn in ("alloc", "forward", "backward"):
            assert inspect.signature(getattr(g, fn)) == inspect.signature(getattr(c, fn)), (cell, fn)


def test_resolve_device_when_cuda_is_unusable(monkeypatch):
    monkeypatch.setattr(backends, "_cuda_usable", lambda: (False, "no driver"))
    with pytest.raises(UsageError, match="--device cpu"):
        backends.resolve_device("cuda")
    seen = []
    assert backends.resolve_device("auto", seen.append) == "cpu"
    assert seen and "no driver" in seen[0] and "CPU" in seen[0]
    assert backends.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(backends, "_cuda_usable", lambda: (True, ""))
    assert backends.resolve_device("auto") == "cuda"


@pytest.mark.skipif(_gpu_present(), reason="a GPU is present")
def test_without_a_gpu_cuda_is_a_usage_error_and_auto_falls_back(tmp_path):
    assert backends.resolve_device("auto") == "cpu"
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabcabc\n" * 20)

    r = run("train", str(corpus), "--device", "cuda", "--max-steps", "1",
            "--out", str(tmp_path / "run"))
    assert r.exit_code == 2, r.output
    assert "--device cpu" in r.output and "GPU" in r.output
