"""A first-ever start trains on the NumPy backend while helpers compile, then switches to the compiled
kernels (charlm.trainer._use_compiled): the switch changes nothing but the speed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import charlm
from charlm import autosize, warmup
from charlm.checkpoint import load_model
from charlm.config import ModelConfig, TrainConfig
from charlm.model import CharLM

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "corpora" / "fables.txt"


_TRAIN_STEP = CharLM.train_step


class FakeWarmup:
    """Helpers that finish after ``after`` polls."""

    def __init__(self, after: int):
        self.after, self.polls, self.procs = after, 0, []

    def ready(self) -> bool:
        self.polls += 1
        return self.polls > self.after

    def wait(self, timeout: float = 0.0) -> bool:
        return True

    def stop(self) -> None:
        pass


_INIT = CharLM.__init__


def _train(tmp_path, name, monkeypatch, warm, compiled_only=False):
    monkeypatch.setattr(warmup, "start", lambda *a, **k: warm)
    if compiled_only:  # the reference: every step on the compiled kernels
        monkeypatch.setattr(CharLM, "__init__", lambda self, *a, device="cpu", **k: _INIT(self, *a, device="cpu", **k))
    else:
        monkeypatch.setattr(CharLM, "__init__", _INIT)
    devices = []
    real = _TRAIN_STEP

    def spy(self, *a, **k):
        devices.append(self.device)
        return real(self, *a, **k)

    monkeypatch.setattr(CharLM, "train_step", spy)
    res = charlm.train(data=TEXT, model=ModelConfig(vocab_size=1, cell="lstm", layers=2, hidden=8, embed=4),
                       train=TrainConfig(max_steps=12, seq_len=8, batch_size=4, eval_every=6, log_every=6,
                                         save_every=6, threads=1, seed=3), out=tmp_path / name)
    assert res.status == "finished" and res.step == 12
    return devices, load_model(tmp_path / name / "model.safetensors")[0]


def test_numpy_first_then_compiled_gives_the_run_of_compiled_kernels(tmp_path, monkeypatch):
    cold_devices, cold = _train(tmp_path, "cold", monkeypatch, FakeWarmup(after=5))
    warm_devices, warm = _train(tmp_path, "warm", monkeypatch, None)
    ref_devices, ref = _train(tmp_path, "ref", monkeypatch, None, compiled_only=True)
    assert cold_devices == ["numpy"] * 5 + ["cpu"] * 7  # helpers still compiling for 5 steps
    assert warm_devices == ["numpy"] + ["cpu"] * 11     # kernels cached: loaded after step 1
    assert ref_devices == ["cpu"] * 12
    for run in (cold, warm):
        assert set(run) == set(ref)
        for k in ref:  # 12 Adam steps on both backends: equal to float32 rounding
            np.testing.assert_allclose(run[k], ref[k], rtol=0, atol=1e-4, err_msg=k)


def test_a_cpu_run_calibrates_on_numpy(monkeypatch):
    seen = []
    monkeypatch.setattr(autosize, "measure_reference",
                        lambda cell, embed, vocab, device, threads=0: seen.append(device) or 5e4)
    from charlm import trainsetup

    class Spec:
        train, model_options, explicit, device, numpy_first = TrainConfig(max_time=60.0), {}, set(), "cpu", True

    trainsetup._choose_size(Spec, 10**6, 80, lambda msg: None)
    Spec.numpy_first = False  # a resumed run or an MPI rank: the compiled kernels from the start
    trainsetup._choose_size(Spec, 10**6, 80, lambda msg: None)
    assert seen == ["numpy", "cpu"]


def test_numpy_calibration_predicts_the_compiled_speed():
    """On the NumPy backend the measured speed is scaled to the compiled kernels' (autosize.NUMPY_SPEEDUP)."""
    from charlm.trainsetup import planned_threads

    raw = []
    orig = time.perf_counter
    ticks = iter(np.arange(0.0, 100.0, 0.5))  # every timed step takes 0.5 s of this fake clock

    def clock():
        raw.append(1)
        return float(next(ticks))

    try:
        time.perf_counter = clock
        cps = autosize.measure_reference("rnn", 4, 20, "numpy")
    finally:
        time.perf_counter = orig
    T, B = autosize.CALIBRATION_SHAPE
    want = T * B / 0.5 * autosize.NUMPY_SPEEDUP * planned_threads(0) ** autosize.THREAD_SCALING
    assert cps == pytest.approx(want)


@pytest.mark.slow
def test_a_cold_cache_starts_at_once_and_switches_when_the_helper_is_done(tmp_path):
    """Real helpers on an empty kernel cache: step 1 comes before any kernel is compiled, the run says
    when it switches, and a SIGINT afterwards ends it cleanly with a model."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "CHARLM_WARMUP": "1",
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    cmd = [sys.executable, "-m", "charlm", "train", str(TEXT), "--cell", "rnn", "--layers", "1", "--hidden", "8",
           "--seq-len", "8", "--batch-size", "4", "--max-time", "10m", "--log-every", "20", "--eval-every", "1000",
           "--threads", "1", "--out", str(tmp_path / "run")]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, deadline = [], time.monotonic() + 600
    try:
        for line in p.stderr:
            lines.append(line)
            if "kernels compiled" in line or time.monotonic() > deadline:
                break
        assert any("kernels compiled" in s for s in lines), "".join(lines[:3] + lines[-5:])
        first = next(s for s in lines if s.startswith("step 1 "))
        assert lines.index(first) < len(lines) - 1  # step 1 came before the switch
        for line in p.stderr:  # a few compiled steps, then stop it
            lines.append(line)
            if line.startswith("step "):
                break
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=300)[1]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, "".join(lines[-5:]) + rest  # interrupted: 128 + SIGINT, checkpoint saved
    assert "checkpoint saved" in rest
    assert (tmp_path / "run" / "model.safetensors").exists()
