"""Robustness matrix, tiny budgets (issue 12): a --max-time used up before the first step ends in one
line saying what took the time and what to do, with no run directory left behind; a budget that ends
within step 1 says so; the closing verdict names the budget that ended the run.

Nothing here measures time: the trainer's clock (and the size calibration's) is a fake one.
"""

from __future__ import annotations

import json
import math
import os
import types

import pytest
from clihelp import assert_clean_error, run

import charlm.trainer as trainmod
from charlm import autosize, rundir
from charlm.model import CharLM

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 20
SIZE = ["--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch-size", "2"]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


@pytest.fixture
def clock(monkeypatch):
    """One fake clock for the trainer and the calibration: ``tick`` seconds per reading, plus jumps."""
    state = {"t": 1000.0, "tick": 0.001}

    def now():
        state["t"] += state["tick"]
        return state["t"]

    monkeypatch.setattr(trainmod, "_clock", now)
    monkeypatch.setattr(autosize, "time", types.SimpleNamespace(perf_counter=now))
    return state


def slow_calibration(monkeypatch, clock, seconds):
    def measure(*args, **kw):
        clock["t"] += seconds   # e.g. the first run on a machine compiles the kernels here
        return 50_000.0

    monkeypatch.setattr(autosize, "measure_reference", measure)


@pytest.mark.parametrize("existing", [False, True])
def test_budget_used_up_by_setup_is_one_line_and_leaves_no_run(corpus, tmp_path, clock, existing, monkeypatch):
    out = tmp_path / "run"
    if existing:
        out.mkdir()
    real = trainmod.build_data

    def slow_setup(*args, **kw):
        clock["t"] += 5.0   # reading a big corpus, say: the setup alone outlasts a 2s budget
        return real(*args, **kw)

    monkeypatch.setattr(trainmod, "build_data", slow_setup)
    r = run("train", corpus, *SIZE, "--max-time", "2s", "--out", out)
    assert_clean_error(r, 2, "--max-time 2s was used up before the first training step",
                       "reading the corpus and setting up took 5.0s", "nothing was trained", "give a bigger --max-time")
    assert [n for n in os.listdir(out) if n != rundir.LOCK] == [] if existing else not out.exists()


def test_budget_used_up_by_the_calibration_says_so(corpus, tmp_path, clock, monkeypatch):
    slow_calibration(monkeypatch, clock, 20.0)
    out = tmp_path / "run"
    r = run("train", corpus, "--max-time", "5s", "--out", out)
    assert_clean_error(r, 2, "measuring this machine's speed took 20.0s (kernel compilation included)",
                       "--max-time 1m", "run the same command again")
    assert not out.exists()


def test_calibration_is_counted_once(corpus, tmp_path, clock, monkeypatch):
    """The size calibration runs inside the run: its seconds are on the run's clock once, not twice."""
    slow_calibration(monkeypatch, clock, 30.0)
    out = tmp_path / "run"
    r = run("train", corpus, "--embed", "4", "--max-time", "100s", "--max-steps", "3", "--out", out)
    assert r.exit_code == 0, r.output
    calib = json.loads((out / rundir.CONFIG).read_text())["autosize"]["calibration_seconds"]
    first = json.loads((out / rundir.METRICS).read_text().splitlines()[0])
    assert calib >= 30.0 and first["step"] == 1
    assert calib <= first["elapsed"] < calib + 10.0


def test_budget_ending_within_step_one_says_so(corpus, tmp_path, clock, monkeypatch):
    real = CharLM.train_step

    def slow_step(self, *args, **kw):
        clock["t"] += 10.0   # the first step of a cold start compiles every kernel
        return real(self, *args, **kw)

    monkeypatch.setattr(CharLM, "train_step", slow_step)
    out = tmp_path / "run"
    r = run("train", corpus, *SIZE, "--max-time", "5s", "--out", out)
    assert r.exit_code == 0, r.output
    assert "time budget of 5s reached after only 1 step" in r.stderr
    assert "give a bigger --max-time to train more than one step" in r.stderr
    assert (out / rundir.MODEL).exists()


@pytest.mark.parametrize("budget,flag", [(["--max-steps", "2"], "--max-steps"), (["--max-epochs", "0.05"],
                                                                                  "--max-epochs")])
def test_verdict_names_the_budget_used(corpus, tmp_path, budget, flag):
    r = run("train", corpus, *SIZE, *budget, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("val ") and "--max-time" not in last
    assert last.startswith("val") and ("good:" in last or f"more {flag}" in last), last


def test_verdict_wording_per_budget():
    bad = 4.0 * math.log(2)
    assert autosize.verdict(bad).endswith("give it a longer --max-time")
    assert autosize.verdict(bad, "max_time").endswith("give it a longer --max-time")
    assert autosize.verdict(bad, "max_steps").endswith("give it more --max-steps")
    assert autosize.verdict(1.8 * math.log(2), "max_epochs").endswith("more --max-epochs improves it")
    assert autosize.verdict(bad, None).endswith("give it a bigger budget")
