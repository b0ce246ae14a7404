"""Learning-rate schedules: warmup, step decay, cosine by steps and by time."""

from __future__ import annotations

import math

import pytest

from charlm.config import TrainConfig
from charlm.optim import learning_rate


def test_constant_and_warmup():
    cfg = TrainConfig(lr=1e-2, warmup_steps=4)
    assert [learning_rate(cfg, s, None) for s in range(5)] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2])


def test_step_decay():
    cfg = TrainConfig(lr=1.0, lr_schedule="step", lr_step_size=10, lr_gamma=0.5)
    assert learning_rate(cfg, 9, None) == 1.0
    assert learning_rate(cfg, 10, None) == 0.5
    assert learning_rate(cfg, 25, None) == 0.25


def test_cosine_by_steps_and_by_time():
    cfg = TrainConfig(lr=1.0, lr_schedule="cosine", lr_min=0.1)
    assert learning_rate(cfg, 0, 100) == pytest.approx(1.0)
    assert learning_rate(cfg, 50, 100) == pytest.approx(0.55)
    assert learning_rate(cfg, 100, 100) == pytest.approx(0.1)
    assert learning_rate(cfg, 7, None, progress=0.5) == pytest.approx(0.55)
    assert learning_rate(cfg, 7, None, progress=2.0) == pytest.approx(0.1)
    assert learning_rate(cfg, 7, None) == 1.0  # no budget to decay over
    assert math.isclose(learning_rate(cfg.replace(warmup_steps=10), 10, 110), 1.0)
