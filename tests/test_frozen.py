"""CharLM.frozen (``backends.cpu.frozen``): inside the scope each CPU cell workspace permutes and
packs its weights once, not once per window; the losses are bit for bit those of packing every
window; a new scope after the weights changed packs the new weights; outside any scope every
forward packs (training). Shapes: H 32 (row split with B 8, unit split with B 1), folded embedding
and one-hot inputs, 2 layers."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from charlm.config import ModelConfig
from charlm.evaluation import evaluate_ids
from charlm.model import CharLM

V, H, T, L = 11, 32, 6, 2
CELLS = ("rnn", "lstm", "gru")


def windows(B, n=4):
    rng = np.random.default_rng(B)
    return [(rng.integers(0, V, (T, B)).astype(np.int32), rng.integers(0, V, (T, B)).astype(np.int32))
            for _ in range(n)]


def losses(model, ws, B):
    state, out = model.init_state(B), []
    for x, y in ws:
        s, _, state = model.loss(x, y, state)
        out.append(s)
    return out, state


@pytest.fixture
def packs(monkeypatch):
    """packs(cell) -> a list that grows by one at each call of that cell's pack_weights."""
    def count(cell):
        mod = importlib.import_module(f"charlm.backends.cpu.{cell}")
        calls, real = [], mod.pack_weights
        monkeypatch.setattr(mod, "pack_weights", lambda *a: (calls.append(1), real(*a))[1])
        return calls
    return count


@pytest.mark.parametrize("embed", [8, 0])
@pytest.mark.parametrize("B", [1, 8])
@pytest.mark.parametrize("cell", CELLS)
def test_a_scope_packs_once_with_the_same_losses(packs, cell, B, embed):
    model = CharLM(ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=embed), seed=3)
    ws = windows(B)
    calls = packs(cell)
    want, want_state = losses(model, ws, B)
    assert len(calls) == L * len(ws)
    calls.clear()
    with model.frozen():
        got, got_state = losses(model, ws, B)
        assert len(calls) == L
        again, _ = losses(model, ws, B)  # the same workspaces, still in the scope: no packing
        assert len(calls) == L
    assert got == want and again == want
    for a, b in zip(got_state, want_state, strict=True):
        np.testing.assert_array_equal(a, b)
    losses(model, ws[:1], B)  # outside a scope again: every forward packs
    assert len(calls) == L + L


@pytest.mark.parametrize("cell", CELLS)
def test_a_new_scope_packs_the_changed_weights(cell):
    model = CharLM(ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=8), seed=4)
    ws = windows(8)
    with model.frozen():
        before, _ = losses(model, ws, 8)
    for p in model.params.values():
        p *= np.float32(1.25)
    with model.frozen():
        after, _ = losses(model, ws, 8)
    fresh = CharLM(model.config, seed=0)
    fresh.load_state_dict(model.state_dict())
    assert after == losses(fresh, ws, 8)[0]
    assert after != before


@pytest.mark.parametrize("cell", CELLS)
def test_training_between_evaluations_is_seen(cell):
    """The trainer's pattern: evaluate, train steps (same workspace shapes), evaluate again."""
    model = CharLM(ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=8), seed=5)
    ids = np.random.default_rng(0).integers(0, V, 8 * T * 3 + 1).astype(np.int32)
    first = evaluate_ids(model, ids, 8, T)
    x, y = windows(8, 1)[0]
    model.train_step(x, y, model.init_state(8))
    for p, g in zip(model.params.values(), model.grads.values(), strict=True):
        p -= np.float32(0.5) * g
    second = evaluate_ids(model, ids, 8, T)
    fresh = CharLM(model.config, seed=0)
    fresh.load_state_dict(model.state_dict())
    assert second == evaluate_ids(fresh, ids, 8, T)
    assert second != first
