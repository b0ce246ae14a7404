"""The first-start workers (charlm.warmup) compile everything a training step and an evaluation
need, and split the work: after them, a fresh process compiles nothing.

Slow (marked): every kernel of a small rnn compiles once, shared by two worker processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
from charlm.warmup import exercise_sampling
exercise_sampling(model, m)  # what charlm sample calls
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
    claims = tmp_path / "claims"
    claims.mkdir()
    workers = [subprocess.Popen([sys.executable, "-m", "charlm.warmup", str(claims), payload], env=env,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(900), p.stderr.read()) for p in workers]
    assert all(rc == 0 for rc, _ in results), results
    # counted in a fresh process: in this one, kernels other tests compiled are not "needed" any more
    code = ("import json, sys; from charlm import warmup; c = json.loads(sys.argv[1]); "
            "print(len(warmup.needed(c['model'], c['train'])) + len(warmup.needed(c['model'], c['train'], True)))")
    count = subprocess.run([sys.executable, "-c", code, payload], env=env, capture_output=True, text=True,
                           timeout=900)
    assert count.returncode == 0, count.stderr
    claimed = [p for p in claims.iterdir() if not p.name.startswith("training-kernels-done.")]
    assert len(claimed) == int(count.stdout.strip().splitlines()[-1]) > 0  # each claimed once
    assert len(list(claims.glob("training-kernels-done.*"))) == 2  # each helper said when training's were done
    files = {p.name.split("-")[0] for p in (tmp_path / "cache").rglob("*.nbi")}
    assert {"rnn.rnn_forward", "rnn.rnn_backward", "optim._adam", "sample.sample_rnn"} <= files
    out = subprocess.run([sys.executable, "-c", CHECK, payload], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []  # everything came from the cache


NEEDED = r"""
import json, sys
from charlm import warmup
from charlm.config import ModelConfig, TrainConfig
model = ModelConfig(vocab_size=64, cell=sys.argv[1], layers=2, hidden=16, embed=8, dropout=0.2)
needed = warmup.needed(model.to_dict(), TrainConfig(batch_size=4).to_dict())
print(json.dumps([[key, d.py_func.__name__, warmup.cost(d), bool(d.targetoptions.get("parallel")),
                   len(d.signatures)] for key, d, _ in needed]))
"""


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_needed_lists_every_kernel_of_a_step_biggest_first_without_compiling(cell, tmp_path):
    # a fresh interpreter: kernels compiled earlier in this one would run instead of being recorded
    out = subprocess.run([sys.executable, "-c", NEEDED, cell], env=_env(tmp_path / "cache"), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    needed = json.loads(out.stdout)
    assert {f"{cell}_forward", f"{cell}_backward", "_adam", "_xent"} <= {name for _, name, *_ in needed}
    assert len({key for key, *_ in needed}) == len(needed)               # each kernel and signature once
    costs = [c for _, _, c, _, _ in needed]
    assert costs == sorted(costs, reverse=True)
    assert all(parallel for *_, parallel, _ in needed[:2])                # the recurrent loops lead
    assert all(n == 0 for *_, n in needed)                                # nothing compiled
    assert not list((tmp_path / "cache").rglob("*.nbi"))


def test_a_kernel_is_claimed_once(tmp_path):
    assert warmup.claim(str(tmp_path), "k1") and not warmup.claim(str(tmp_path), "k1")
    assert warmup.claim(str(tmp_path), "k2")


def test_idle_cores_is_measured_now_not_the_load_average(monkeypatch):
    """The idle share of CPU time over a short sample (not the lagging load average), times the CPUs."""
    samples = iter([(1000, 4000), (1150, 4200)])  # (idle, total) jiffies: 150 of 200 idle
    monkeypatch.setattr(warmup, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(warmup.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(warmup.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(warmup.os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # a busy minute ago: ignored
    assert warmup.idle_cores(sample=0.0) == pytest.approx(1.5)
    monkeypatch.setattr(warmup, "_cpu_times", lambda: None)  # no /proc/stat: the load average
    assert warmup.idle_cores(sample=0.0) == pytest.approx(2 - 9.0)
    if os.path.exists("/proc/stat"):
        monkeypatch.undo()
        assert 0.0 <= warmup.idle_cores(sample=0.05) <= (os.cpu_count() or 1)


def test_helper_count_follows_the_idle_cores(tmp_path, monkeypatch):
    from charlm import kernelcache

    monkeypatch.setattr(kernelcache, "DIR", str(tmp_path))
    monkeypatch.delenv("CHARLM_WARMUP", raising=False)
    for idle, n in ((0.4, 0), (0.8, 1), (1.2, 1), (2.0, 1), (3.0, 2), (16.0, warmup.MAX_HELPERS)):
        monkeypatch.setattr(warmup, "idle_cores", lambda idle=idle: idle)
        assert warmup.helpers("gru", "cpu") == n
    monkeypatch.setattr(warmup, "idle_cores", lambda: 0.1)
    monkeypatch.setenv("CHARLM_WARMUP", "1")
    assert warmup.helpers("gru", "cpu") == 1


def test_helpers_only_for_a_cold_cpu_cache(tmp_path, monkeypatch):
    from charlm import kernelcache

    monkeypatch.setattr(kernelcache, "DIR", str(tmp_path))
    monkeypatch.delenv("CHARLM_WARMUP", raising=False)  # tests/conftest.py turns the helpers off
    monkeypatch.setattr(warmup, "idle_cores", lambda: 1.5)
    assert warmup.wanted("gru", "cpu")
    assert not warmup.wanted("gru", "cuda")
    stale = tmp_path / "cpu_x-000000000000"  # the cache of an older state of the sources: not counted
    stale.mkdir()
    (stale / "gru.gru_forward-77.py311.nbi").write_bytes(b"")
    assert warmup.wanted("gru", "cpu")
    cpu = Path(kernelcache._current_folders()[0])
    cpu.mkdir()
    (cpu / "gru.gru_forward-77.py311.nbi").write_bytes(b"")
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


def test_the_helper_imports_this_charlm_not_one_in_its_working_directory(tmp_path):
    """Run from a clone of the sources (the README's first command), ``python -m charlm.warmup`` imported
    the clone's charlm and compiled into another cache folder than the installed trainer reads."""
    decoy = tmp_path / "charlm"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit(7)\n")
    (decoy / "warmup.py").write_text("raise SystemExit(7)\n")
    out = subprocess.run(warmup.helper_command("no-such-claims-dir", "{}"), cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2 and "usage: python -m charlm.warmup" in out.stderr, (out.returncode, out.stderr)
