"""Time-based cadences, the final evaluation inside --max-time, one final evaluation, resume budgets.

Nothing here measures time: the trainer's clock (``charlm.trainer._clock``) is replaced by a fake
one that advances by a fixed amount per reading, so every cadence decision is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from runhelp import PANGRAMS as TEXT
from runhelp import metrics, write_corpus

import charlm.trainer as trainmod
from charlm import checkpoint as ckpt
from charlm.train import evaluate_ids, evaluate_pieces, train

TINY = dict(cell="gru", layers=1, hidden=8, embed=4, seq_len=8, batch_size=4, val_frac=0.1, seed=3, threads=1)


@pytest.fixture
def corpus(tmp_path):
    return str(write_corpus(tmp_path, TEXT))


@pytest.fixture
def fake_clock(monkeypatch):
    """Each reading of the trainer's clock is `tick` seconds after the previous one."""
    state = {"t": 1000.0, "tick": 1.0}

    def clock():
        state["t"] += state["tick"]
        return state["t"]

    monkeypatch.setattr(trainmod, "_clock", clock)
    return state


def test_default_cadences_are_time_based(corpus, tmp_path, fake_clock):
    out = str(tmp_path / "run")
    notes = []
    res = train([corpus], {**TINY, "max_steps": 60, "out": out}, notice=notes.append)
    assert res.step == 60
    rows = metrics(out)
    train_rows = [r for r in rows if "train_loss" in r]
    # step 1 has its own line, without a throughput (its time is mostly compilation)
    assert train_rows[0]["step"] == 1 and train_rows[0]["chars_per_sec"] is None
    assert all(r["chars_per_sec"] > 0 for r in train_rows[1:])
    # then one line per ~10 s of (fake) time, not one per step, and a last line at the last step
    gaps = [b["elapsed"] - a["elapsed"] for a, b in zip(train_rows[1:-2], train_rows[2:-1], strict=True)]
    assert gaps and all(g >= 10 for g in gaps)
    assert len(train_rows) < 60 / 2 and train_rows[-1]["step"] == 60
    # the first evaluation comes ~30 s after the first step, then every 2 minutes, then the final one
    vals = [r for r in rows if "val_loss" in r]
    assert vals[0]["elapsed"] - train_rows[0]["elapsed"] >= 29
    assert vals[0]["step"] < 60 and vals[-1]["step"] == 60
    assert len({r["step"] for r in vals}) == len(vals)


def test_explicit_step_cadences_still_work(corpus, tmp_path):
    out = str(tmp_path / "run")
    train([corpus], {**TINY, "max_steps": 12, "log_every": 3, "eval_every": 4, "save_every": 6, "out": out})
    rows = metrics(out)
    assert [r["step"] for r in rows if "train_loss" in r] == [1, 3, 6, 9, 12]
    assert [r["step"] for r in rows if "val_loss" in r] == [4, 8, 12]


@pytest.mark.parametrize("max_steps", [12, 13])
def test_final_evaluation_runs_once(corpus, tmp_path, max_steps):
    """Issue 19.10: the last step a multiple of --eval-every gave two val rows for that step."""
    out = str(tmp_path / "run")
    train([corpus], {**TINY, "max_steps": max_steps, "eval_every": 4, "out": out})
    steps = [r["step"] for r in metrics(out) if "val_loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == max_steps


def test_final_evaluation_fits_in_max_time(corpus, tmp_path, fake_clock):
    """--max-time is the whole run: setup, compilation, evaluations and the final evaluation."""
    out = str(tmp_path / "run")
    notes = []
    res = train([corpus], {**TINY, "max_time": 200.0, "val_chars": 0, "out": out}, notice=notes.append)
    rows = metrics(out)
    final = [r for r in rows if "val_loss" in r][-1]
    assert final["step"] == res.step
    # the stop was decided with the final evaluation's cost (measured on the first one) in reserve
    _, meta, _ = ckpt.load_checkpoint(out)
    assert meta["elapsed"] <= 200.0
    assert res.status == "finished"


def test_validation_subset_is_fixed_and_bounded():
    class Counting:
        def __init__(self):
            self.seen = []

        def init_state(self, b):
            return None

        def loss(self, x, y, state):
            assert np.array_equal(y, x + 1)  # ids are positions: every target is the next character
            self.seen.append(x.copy())
            return float(x.size), x.size, state

    ids = np.arange(100_000)
    m = Counting()
    assert evaluate_pieces(m, ids, 5000, 8, 10) == pytest.approx(1.0)
    scored = np.concatenate(m.seen, axis=0)  # (L, B): B pieces of L characters
    assert scored.shape == (625, 8)
    starts = scored[0]
    assert starts[0] == 0 and starts[-1] == len(ids) - 1 - 625  # spread from the start to the end of the split
    assert np.all(np.diff(starts) > 625)  # pieces do not overlap
    assert np.array_equal(scored, starts + np.arange(625)[:, None])  # each piece contiguous
    m2 = Counting()
    evaluate_pieces(m2, ids, 5000, 8, 10)
    assert all(np.array_equal(a, b) for a, b in zip(m.seen, m2.seen, strict=True))  # the same subset every time
    m3 = Counting()
    evaluate_ids(m3, ids[:1000], 8, 10)
    assert sum(x.size for x in m3.seen) == 999


def test_training_evaluates_the_subset_unless_asked(corpus, tmp_path):
    sizes = []
    real = trainmod.evaluate_pieces

    def spy(model, ids, n, b, t, **kw):
        sizes.append(n)
        return real(model, ids, n, b, t, **kw)

    big = {**TINY, "val_frac": 0.5, "max_steps": 2}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainmod, "evaluate_pieces", spy)
        train([corpus], {**big, "val_chars": 300, "out": str(tmp_path / "a")})
        assert sizes == [300]
        train([corpus], {**big, "val_chars": 0, "out": str(tmp_path / "b")})
        assert sizes == [300]  # the whole split: evaluate_ids, not the subset


def test_resume_budget_replaces_the_stored_one(corpus, tmp_path, fake_clock):
    """Issue 19.6: --max-steps at resume after a time-capped run used to do nothing."""
    out = str(tmp_path / "run")
    first = train([corpus], {**TINY, "max_time": 60.0, "out": out})
    assert first.status == "finished"
    notes = []
    res = train([], {"max_steps": first.step + 7}, resume=out, notice=notes.append)
    assert res.step == first.step + 7
    _, meta, _ = ckpt.load_checkpoint(out)
    assert meta["train_config"]["max_time"] == 0 and meta["train_config"]["max_steps"] == first.step + 7
    again = train([], {}, resume=out)  # no new budget: nothing to train, and no second final evaluation
    assert again.step == res.step
    steps = [r["step"] for r in metrics(out) if "val_loss" in r]
    assert steps == sorted(set(steps))


def test_resume_with_a_larger_budget_fades_into_the_new_schedule(corpus, tmp_path):
    out = str(tmp_path / "run")
    train([corpus], {**TINY, "max_steps": 20, "log_every": 1, "lr": 1e-2, "out": out})
    lr20 = [r["lr"] for r in metrics(out) if r.get("step") == 20 and "lr" in r][0]
    assert lr20 < 1e-4  # the cosine schedule has decayed to ~0 by its end
    notes = []
    train([], {"max_steps": 120, "log_every": 1}, resume=out, notice=notes.append)
    note = next(n for n in notes if n.startswith("new budget at resume"))
    assert "10 steps" in note  # a tenth of the 100 remaining steps
    lrs = {r["step"]: r["lr"] for r in metrics(out) if "lr" in r}

    def plan(step):  # the cosine schedule of a 120-step budget
        return 0.5 * 1e-2 * (1 + math.cos(math.pi * step / 120))

    # continuous at the resume point (no jump back to the peak), then on the new schedule
    assert lrs[21] < 0.15 * plan(20)
    assert all(lrs[s] <= lrs[s + 1] for s in range(21, 30))
    for s in range(31, 121):
        assert lrs[s] == pytest.approx(plan(s - 1), rel=1e-9, abs=1e-12), s


def test_resume_without_a_new_budget_keeps_the_schedule(corpus, tmp_path):
    out = str(tmp_path / "run")
    train([corpus], {**TINY, "max_steps": 10, "log_every": 1, "out": out})
    notes = []
    train([], {"max_steps": 10}, resume=out, notice=notes.append)  # the same budget: not a change
    assert not any(n.startswith("new budget") for n in notes)
