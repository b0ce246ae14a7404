"""`charlm import` and charlm.interop: a PyTorch state dict (safetensors) becomes a charlm run directory,
and a charlm model file loads back into the PyTorch module (strict=True) with the same logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torchoracle
from clihelp import run
from safetensors.numpy import save_file
from torchoracle import oracle

from charlm.config import ModelConfig
from charlm.errors import UsageError
from charlm.generate import load
from charlm.interop import import_state_dict, infer_config
from charlm.model import CharLM
from charlm.tokenizer import CharTokenizer

TEXT = "abracadabra, cadabra!\n"
T, B = 6, 2



@pytest.fixture
def tok(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    tok.save(tmp_path / "tokenizer.json")
    return tok


def ids(V, seed=0):
    return np.random.default_rng(seed).integers(0, V, (T, B)).astype(np.int32)


def charlm_logits(model: CharLM, x):
    return model.logits(x, model.init_state(x.shape[1]))[0]


# ---------------------------------------------------------------- without torch


@pytest.mark.parametrize("cell,embed,dtype", [("lstm", 4, np.float32), ("gru", 0, np.float64),
                                              ("rnn", 3, np.float16)])
def test_import_numpy_state_dict(tmp_path, tok, cell, embed, dtype):
    nl = "relu" if cell == "rnn" else "tanh"
    config = ModelConfig(vocab_size=len(tok), cell=cell, layers=2, hidden=5, embed=embed, nonlinearity=nl)
    src = CharLM(config, seed=7)
    sd = {k: v.astype(dtype) for k, v in src.state_dict().items()}
    save_file(sd, str(tmp_path / "sd.safetensors"))
    res = import_state_dict(tmp_path / "sd.safetensors", cell=cell, tokenizer=tmp_path / "tokenizer.json",
                            out=tmp_path / "run", nonlinearity=nl)
    assert res.config == config
    assert (len(res.converted) > 0) == (dtype != np.float32)
    m = load(tmp_path / "run")
    assert m.config == config and m.tokenizer == tok
    for name, v in m.model.state_dict().items():
        assert v.dtype == np.float32 and np.array_equal(v, sd[name].astype(np.float32)), name
    x = ids(len(tok))
    ref = CharLM.from_state_dict(config, {k: v.astype(np.float32) for k, v in sd.items()})
    assert np.array_equal(charlm_logits(m.model, x), charlm_logits(ref, x))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == config.to_dict()
    assert CharTokenizer.load(tmp_path / "run" / "tokenizer.json") == tok


def test_import_cli_then_info_sample_eval(tmp_path, tok):
    config = ModelConfig(vocab_size=len(tok), cell="lstm", layers=1, hidden=6, embed=3)
    sd = {"module." + k: v for k, v in CharLM(config, seed=2).state_dict().items()}   # a DataParallel dump
    save_file(sd, str(tmp_path / "sd.safetensors"))
    out = tmp_path / "imported"
    r = run("import", tmp_path / "sd.safetensors", "--cell", "lstm", "--tokenizer", tmp_path, "--out", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out) and "'module.'" in r.stderr and "charlm sample" in r.stderr
    info = run("info", out, "--json")
    assert info.exit_code == 0, info.output
    obj = json.loads(info.stdout)
    assert obj["model"]["config"] == config.to_dict()
    assert obj["training"]["imported_from"] == str(tmp_path / "sd.safetensors")
    assert "imported from" in run("info", out).stdout
    s = run("sample", out, "--length", 5, "--seed", 1, "--prime", "ab")
    assert s.exit_code == 0 and len(s.stdout) == 7, s.output
    (tmp_path / "t.txt").write_text(TEXT)
    e = run("eval", out, "--file", tmp_path / "t.txt", "--json")
    assert e.exit_code == 0 and json.loads(e.stdout)["chars"] == len(TEXT) - 1, e.output
    again = run("import", tmp_path / "sd.safetensors", "--cell", "lstm", "--tokenizer", tmp_path, "--out", out)
    assert again.exit_code == 2 and "already holds" in again.stderr


def _sd(tok, cell="lstm", **kw):
    return CharLM(ModelConfig(vocab_size=len(tok), cell=cell, layers=2, hidden=4, embed=3, **kw)).state_dict()


@pytest.mark.parametrize("mutate,match", [
    (lambda sd: sd.pop("rnn.weight_hh_l0"), r"no 'rnn.weight_hh_l0'"),
    (lambda sd: sd.pop("rnn.bias_hh_l1"), r"no 'rnn.bias_hh_l1'.*bias=True"),
    (lambda sd: sd.update({"rnn.weight_hh_l1": np.zeros((4 * 5, 5), np.float32)}),
     r"'rnn.weight_hh_l1' has shape \(20, 5\), expected \(16, 4\).*same hidden size"),
    (lambda sd: sd.update({"rnn.weight_ih_l0": np.zeros((16, 7), np.float32)}),
     r"'rnn.weight_ih_l0' has shape \(16, 7\), expected \(16, 3\)"),
    (lambda sd: sd.update({"head.weight": np.zeros((99, 4), np.float32)}), r"'head.weight'.*tokenizer has"),
    (lambda sd: sd.update({"embed.weight": np.zeros((99, 3), np.float32)}), r"'embed.weight'"),
    (lambda sd: sd.update({"rnn.weight_ih_l0_reverse": np.zeros((16, 3), np.float32)}), "bidirectional"),
])
def test_inconsistent_state_dicts_are_refused(tok, mutate, match):
    sd = _sd(tok)
    mutate(sd)
    with pytest.raises(UsageError, match=match):
        infer_config(sd, cell="lstm", vocab_size=len(tok))


def test_non_finite_weights_are_refused(tmp_path, tok):
    sd = _sd(tok)
    sd["head.weight"][0, 0] = np.nan
    save_file(sd, str(tmp_path / "sd.safetensors"))
    with pytest.raises(UsageError, match="'head.weight' holds NaN"):
        import_state_dict(tmp_path / "sd.safetensors", cell="lstm", tokenizer=tok, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_wrong_cell_and_dtype(tmp_path, tok):
    with pytest.raises(UsageError, match=r"expected \(12, 4\).*look like lstm weights \(pass --cell lstm\)"):
        infer_config(_sd(tok), cell="gru", vocab_size=len(tok))
    with pytest.raises(UsageError, match="--nonlinearity applies to --cell rnn"):
        infer_config(_sd(tok), cell="lstm", vocab_size=len(tok), nonlinearity="relu")
    sd = _sd(tok)
    sd["head.bias"] = np.zeros(len(tok), np.int32)
    save_file(sd, str(tmp_path / "int.safetensors"))
    r = run("import", tmp_path / "int.safetensors", "--cell", "lstm", "--tokenizer", tmp_path / "tokenizer.json",
            "--out", tmp_path / "r")
    assert r.exit_code == 2 and "'head.bias'" in r.stderr and "I32" in r.stderr
    assert not (tmp_path / "r").exists()                     # nothing written on refusal
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00junk!")
    r = run("import", tmp_path / "junk.safetensors", "--cell", "lstm", "--tokenizer", tmp_path / "tokenizer.json",
            "--out", tmp_path / "r")
    assert r.exit_code == 1 and "not a readable safetensors file" in r.stderr


# ---------------------------------------------------------------- with torch


def torch_charlm(config: ModelConfig):
    torch = oracle()
    torch.manual_seed(0)
    return torch, torchoracle.torch_charlm(config)


@pytest.mark.parametrize("cell,embed", [("lstm", 4), ("gru", 0), ("rnn", 3)])
def test_torch_trained_module_imports_with_same_logits(tmp_path, tok, cell, embed):
    config = ModelConfig(vocab_size=len(tok), cell=cell, layers=2, hidden=5, embed=embed)
    torch, tm = torch_charlm(config)
    from safetensors.torch import save_file as torch_save

    torch_save(tm.state_dict(), str(tmp_path / "torch.safetensors"))
    r = run("import", tmp_path / "torch.safetensors", "--cell", cell, "--tokenizer", tmp_path / "tokenizer.json",
            "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    m = load(tmp_path / "run")
    assert m.config == config
    x = ids(len(tok), seed=3)
    with torch.no_grad():
        want = tm(torch.from_numpy(x).long())[0].numpy()
    np.testing.assert_allclose(charlm_logits(m.model, x), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,embed", [("lstm", 4), ("gru", 3), ("rnn", 0)])
def test_charlm_model_file_loads_into_torch_strict(tmp_path, tok, cell, embed):
    from charlm import checkpoint

    config = ModelConfig(vocab_size=len(tok), cell=cell, layers=2, hidden=5, embed=embed)
    torch, tm = torch_charlm(config)
    from safetensors.torch import load_file

    model = CharLM(config, seed=11)
    path = checkpoint.save_model(tmp_path, model.state_dict(), model_config=config.to_dict(), tokenizer=tok.to_dict())
    tm.load_state_dict(load_file(str(path)), strict=True)
    x = ids(len(tok), seed=4)
    with torch.no_grad():
        got = tm(torch.from_numpy(x).long())[0].numpy()
    np.testing.assert_allclose(got, charlm_logits(model, x), atol=1e-5, rtol=0)
