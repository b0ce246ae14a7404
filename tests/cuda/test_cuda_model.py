"""CharLM end to end on CUDA against the CPU: same seed -> same weights, same dropout masks,
the same losses, gradients, carried state, clipped norms and optimizer updates over two
windows; evaluation and logits; model files written from one device load on the other."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import rel_err

from charlm import checkpoint as ckpt
from charlm.config import ModelConfig, TrainConfig
from charlm.model import CharLM
from charlm.optim import Optimizer

V, E, H, T, B = 7, 5, 4, 3, 2
# (cell, layers, embed, nonlinearity, dropout): every cell, embedding and one-hot, relu, dropout on.
CASES = [("lstm", 2, E, "tanh", 0.3), ("gru", 2, 0, "tanh", 0.5), ("rnn", 2, E, "relu", 0.2)]
IDS = ["lstm-emb-drop", "gru-onehot-drop", "rnn-relu-emb-drop"]


def cfg(cell, layers, embed, nonlinearity, dropout):
    return ModelConfig(vocab_size=V, cell=cell, layers=layers, hidden=H, embed=embed,
                       nonlinearity=nonlinearity, dropout=dropout)


def batch(seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, V, (T, B)).astype(np.int32) for _ in range(2))


def host(model, a):
    return model.backend.to_host(a)


def pair(config):
    cpu, gpu = CharLM(config, seed=0, device="cpu"), CharLM(config, seed=0, device="cuda")
    for k, v in cpu.state_dict().items():
        np.testing.assert_array_equal(gpu.state_dict()[k], v)
    return cpu, gpu


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_training_matches_cpu(case):
    cpu, gpu = pair(cfg(*case))
    tc = TrainConfig(optimizer="adam", lr=1e-2, clip_norm=0.5)
    opts = Optimizer(tc, cpu), Optimizer(tc, gpu)
    states = cpu.init_state(B), gpu.init_state(B)
    rngs = np.random.default_rng(7), np.random.default_rng(7)  # masks are drawn on the host
    for window in range(2):
        x, y = batch(window)
        (lc, sc), (lg, sg) = (m.train_step(x, y, s, r) for m, s, r in zip((cpu, gpu), states, rngs, strict=True))
        assert isinstance(lg, float) and abs(lg - lc) < 1e-5 * lc
        for name in cpu.names:
            g = host(gpu, gpu.grads[name])
            assert np.abs(g).max() > 0, name
            assert rel_err(g, cpu.grads[name]) < 1e-5, f"window {window} {name}: {rel_err(g, cpu.grads[name]):.2e}"
        for a, b in zip(sc, sg, strict=True):
            assert rel_err(host(gpu, b), a) < 1e-5
        states = sc, sg
        nc, ng = (o.clip() for o in opts)
        assert ng == pytest.approx(nc, rel=1e-5)
        for o in opts:
            o.step(1e-2)
    assert rel_err(host(gpu, gpu.flat), cpu.flat) < 1e-5
    assert rel_err(host(gpu, opts[1].state["v"]), opts[0].state["v"]) < 1e-5


def test_evaluation_matches_cpu():
    cpu, gpu = pair(cfg("lstm", 2, E, "tanh", 0.0))
    x, y = batch(3)
    (sc, nc, stc), (sg, ng, stg) = cpu.loss(x, y, cpu.init_state(B)), gpu.loss(x, y, gpu.init_state(B))
    assert nc == ng == T * B and abs(sg - sc) < 1e-5 * sc
    (lc, _), (lg, _) = cpu.logits(x, stc), gpu.logits(x, stg)
    assert isinstance(lg, np.ndarray) and lg.shape == (T, B, V)
    assert rel_err(lg, lc) < 1e-5


@pytest.mark.parametrize("trained_on,loaded_on", [("cuda", "cpu"), ("cpu", "cuda")])
def test_model_file_moves_between_devices(tmp_path, trained_on, loaded_on):
    config = cfg("gru", 1, E, "tanh", 0.0)
    src = CharLM(config, seed=1, device=trained_on)
    opt = Optimizer(TrainConfig(optimizer="sgd", lr=0.1), src)
    x, y = batch(4)
    src.train_step(x, y, src.init_state(B))
    opt.step(0.1)
    path = ckpt.save_model(tmp_path / "m.safetensors", src.state_dict(), model_config=config.to_dict(),
                           tokenizer={})
    sd, _ = ckpt.load_model(path)
    dst = CharLM.from_state_dict(config, sd, device=loaded_on)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)
    (a, _), (b, _) = src.logits(x, src.init_state(B)), dst.logits(x, dst.init_state(B))
    assert rel_err(a, b) < 1e-5
