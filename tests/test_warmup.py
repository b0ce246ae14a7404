"""The first-start helpers (charlm.warmup) compile everything a training step and an evaluation
need, and split the work: after them, a fresh process compiles nothing.

Slow (marked): every kernel of a small rnn compiles once, in the two helper processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from charlm import warmup
from charlm.config import ModelConfig, TrainConfig

CHECK = r"""
import json, sys
import numpy as np
from numba.core import event

compiled = []

class Record(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass

event.register("numba:compile", Record())
from charlm.config import ModelConfig, TrainConfig
from charlm.model import CharLM
from charlm.optim import Optimizer
from charlm.trainsetup import set_threads

cfg = json.loads(sys.argv[1])
m, t = ModelConfig.from_dict(cfg["model"]), TrainConfig.from_dict(cfg["train"])
set_threads(t.threads)
model = CharLM(m, seed=1)
B, T = t.batch_size, 5
x = np.random.default_rng(1).integers(0, m.vocab_size, (T, B)).astype(np.int32)
model.train_step(x, x, model.init_state(B), np.random.default_rng(1))
opt = Optimizer(t, model)
opt.clip()
model.backend.scale_(model.grad_flat, 0.5)
opt.step(t.lr)
model.loss(x, x, model.init_state(B))
print(json.dumps(compiled))
"""


def _env(cache) -> dict:
    return {**{k: v for k, v in os.environ.items() if k != "CHARLM_WARMUP"}, "NUMBA_CACHE_DIR": str(cache)}


@pytest.mark.slow
def test_helpers_compile_everything_a_step_needs(tmp_path):
    model = ModelConfig(vocab_size=64, cell="rnn", layers=2, hidden=16, embed=8, dropout=0.2)
    train = TrainConfig(batch_size=4, threads=0)
    payload = json.dumps({"model": model.to_dict(), "train": train.to_dict()})
    env = _env(tmp_path / "cache")
    helpers = [subprocess.Popen([sys.executable, "-m", "charlm.warmup", role, payload], env=env,
                                stderr=subprocess.PIPE, text=True) for role in warmup.ROLES]
    results = [(p.wait(900), p.stderr.read()) for p in helpers]
    assert all(rc == 0 for rc, _ in results), results
    files = {p.name.split("-")[0] for p in (tmp_path / "cache").rglob("*.nbi")}
    assert {"rnn.rnn_forward", "rnn.rnn_backward", "optim._adam"} <= files
    out = subprocess.run([sys.executable, "-c", CHECK, payload], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []  # everything came from the cache


def test_helpers_only_for_a_cold_cpu_cache(tmp_path, monkeypatch):
    from charlm import kernelcache

    monkeypatch.setattr(kernelcache, "DIR", str(tmp_path))
    monkeypatch.setattr(warmup, "idle_cores", lambda: 1.5)
    assert warmup.wanted("gru", "cpu")
    assert not warmup.wanted("gru", "cuda")
    (tmp_path / "cpu_x").mkdir()
    (tmp_path / "cpu_x" / "gru.gru_forward-77.py311.nbi").write_bytes(b"")
    assert not warmup.wanted("gru", "cpu") and warmup.wanted("lstm", "cpu")
    monkeypatch.setattr(warmup, "idle_cores", lambda: 0.2)  # every core busy: helpers would only add work
    assert not warmup.wanted("lstm", "cpu")
    monkeypatch.setenv("CHARLM_WARMUP", "1")
    assert warmup.wanted("lstm", "cpu")
    monkeypatch.setenv("CHARLM_WARMUP", "0")
    assert not warmup.wanted("lstm", "cpu")
    monkeypatch.setattr(kernelcache, "DIR", None)
    monkeypatch.delenv("CHARLM_WARMUP")
    assert not warmup.wanted("lstm", "cpu")  # no cache: helpers could not hand anything over
