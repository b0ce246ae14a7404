"""PyTorch as an independent oracle: a CharLM state dict loads into an nn.Module with attributes
embed / rnn / head (strict=True) and both give the same logits, loss, final state and gradients;
and a torch-initialized state dict loads back into CharLM."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import rel_err
from torchoracle import oracle, torch_charlm

from charlm.config import ModelConfig
from charlm.model import CharLM, count_params

torch = oracle()
torch.set_num_threads(1)
nn = torch.nn
F = torch.nn.functional

V, E, H, T, B = 7, 5, 4, 5, 3
CASES = [("rnn", E), ("lstm", E), ("gru", E), ("lstm", 0)]
CASE_IDS = [f"{c}-{'emb' if e else 'onehot'}" for c, e in CASES]
TOL = {np.float32: 1e-5, np.float64: 1e-10}


def cfg(cell, embed, layers=2):
    return ModelConfig(vocab_size=V, cell=cell, layers=layers, hidden=H, embed=embed)


def data(layers, dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0, c0 = (0.5 * rng.standard_normal((2, layers, B, H))).astype(dtype)
    return x, y, h0, c0


def torch_model(config, sd, dtype):
    tm = torch_charlm(config).to(torch.float64 if dtype == np.float64 else torch.float32)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    return tm


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell,embed", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("device", ["cpu", "numpy"])  # numpy: the backend of a first-ever start
def test_matches_torch(cell, embed, dtype, device):
    config = cfg(cell, embed)
    model = CharLM(config, seed=3, dtype=dtype, device=device)
    tm = torch_model(config, model.state_dict(), dtype)
    assert list(tm.state_dict()) == model.names
    assert sum(p.numel() for p in tm.parameters()) == count_params(config)
    x, y, h0, c0 = data(config.layers, dtype)
    tol = TOL[dtype]

    t_logits, t_h, t_c = tm(torch.from_numpy(x).long(), torch.from_numpy(h0), torch.from_numpy(c0))
    t_loss = F.cross_entropy(t_logits.reshape(T * B, V), torch.from_numpy(y).long().reshape(T * B))
    t_loss.backward()

    logits, (h, c) = model.logits(x, (h0, c0))
    assert rel_err(logits, t_logits.detach().numpy()) < tol
    assert rel_err(h, t_h.detach().numpy()) < tol
    if cell == "lstm":
        assert rel_err(c, t_c.detach().numpy()) < tol
    loss, _ = model.train_step(x, y, (h0, c0))
    assert abs(float(loss) - t_loss.item()) < tol * t_loss.item()
    t_params = dict(tm.named_parameters())
    for name in model.names:
        assert rel_err(model.grads[name], t_params[name].grad.numpy()) < tol, name


@pytest.mark.parametrize("cell,embed", CASES, ids=CASE_IDS)
def test_torch_initialized_weights_load_into_charlm(cell, embed):
    config = cfg(cell, embed)
    torch.manual_seed(0)
    tm = torch_charlm(config)
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    model = CharLM.from_state_dict(config, sd)
    for name in model.names:
        np.testing.assert_array_equal(model.params[name], sd[name])
    x, _, h0, c0 = data(config.layers, np.float32)
    with torch.no_grad():
        t_logits = tm(torch.from_numpy(x).long(), torch.from_numpy(h0), torch.from_numpy(c0))[0]
    assert rel_err(model.logits(x, (h0, c0))[0], t_logits.numpy()) < 1e-5
