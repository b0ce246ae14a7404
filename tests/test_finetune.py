"""Fine-tuning (`charlm train NEW --init-from SOURCE`): weights and vocabulary carried over, new symbols
under --unknown (error / skip / replace / extend), a fresh optimizer, the run's record of its origin."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from clihelp import run
from runhelp import PANGRAMS as TEXT
from runhelp import metrics

from charlm import checkpoint, finetune
from charlm.config import ModelConfig
from charlm.errors import UsageError
from charlm.generate import load
from charlm.model import CharLM
from charlm.tokenizer import CharTokenizer
from charlm.train import train

NEW = TEXT.replace("dog.", "dog@ ~")       # two symbols the source never saw
TINY = dict(cell="lstm", layers=1, hidden=16, embed=8, seq_len=16, batch_size=4, log_every=1,
            eval_every=20, save_every=20, val_frac=0.1, seed=3)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small LSTM trained on TEXT until its loss is far below uniform."""
    d = tmp_path_factory.mktemp("ft")
    (d / "old.txt").write_text(TEXT, encoding="utf-8")
    (d / "new.txt").write_text(NEW, encoding="utf-8")
    train([str(d / "old.txt")], {**TINY, "max_steps": 60, "lr": 3e-2, "lr_schedule": "constant", "hidden": 32,
                                 "out": str(d / "src")})
    return d


def _source(config, tok, seed=0):
    return finetune.Source("/src/model.safetensors", config, tok, CharLM(config, seed=seed).state_dict(), 7)


@pytest.mark.parametrize("embed", [0, 4])
def test_transfer_copies_known_rows_and_keeps_new_ones_fresh(embed):
    tok = CharTokenizer.from_text("abcde")
    small = ModelConfig(vocab_size=5, cell="gru", layers=2, hidden=6, embed=embed)
    src = _source(small, tok, seed=1)
    big = ModelConfig(**{**small.to_dict(), "vocab_size": 7})
    model, fresh = CharLM(big, seed=2), CharLM(big, seed=2).state_dict()
    finetune.transfer(model, src)
    sd = model.state_dict()
    for name, value in sd.items():
        old = src.state_dict[name]
        if name in ("embed.weight", "head.weight", "head.bias"):
            assert np.array_equal(value[:5], old) and np.array_equal(value[5:], fresh[name][5:])
        elif name == "rnn.weight_ih_l0" and embed == 0:
            assert value.shape == (18, 7)
            assert np.array_equal(value[:, :5], old) and np.array_equal(value[:, 5:], fresh[name][:, 5:])
        else:
            assert np.array_equal(value, old), name


def test_vocabulary_policies():
    tok = CharTokenizer.from_text("abc")
    counts = np.zeros(128, np.int64)
    for ch, n in (("a", 5), ("b", 1), ("z", 3), ("y", 1)):
        counts[ord(ch)] = n
    with pytest.raises(UsageError) as e:
        finetune.adapt_vocabulary(tok, counts, "error", print)
    assert "4 symbols of the new corpus (2 distinct)" in str(e.value) and "'z' x3" in str(e.value)
    assert 'unknown="skip"' in str(e.value) and '"extend"' in str(e.value) and "--unknown skip" in e.value.cli_message
    notes = []
    run_tok, enc = finetune.adapt_vocabulary(tok, counts, "skip", notes.append)
    assert run_tok is tok and list(enc.encode("azb")) == [0, 1] and "skipping" in notes[0]
    run_tok, enc = finetune.adapt_vocabulary(tok, counts, "replace", notes.append)
    assert run_tok.vocab == ["a", "b", "c", None] and enc is run_tok and list(enc.encode("zb")) == [3, 1]
    run_tok, enc = finetune.adapt_vocabulary(tok, counts, "extend", notes.append)
    assert run_tok.vocab == ["a", "b", "c", "y", "z"] and list(enc.encode("zay")) == [4, 0, 3]
    assert finetune.adapt_vocabulary(tok, counts[:100], "extend", print)[0] is tok   # nothing new: unchanged


def test_fine_tuned_run_starts_from_the_source_loss(source):
    d = source
    src_model = load(d / "src")
    src_loss = src_model.eval(TEXT)["loss_nats"]
    V = len(src_model.tokenizer)
    assert src_loss < math.log(V) - 1.0                 # the source has learnt something
    out = d / "ft"
    r = run("train", d / "new.txt", "--init-from", d / "src", "--unknown", "extend", "--max-steps", 2,
            "--lr", "1e-9", "--log-every", 1, "--out", out)
    assert r.exit_code == 0, r.output
    assert "fine-tuning" in r.stderr and "adding 2 new ids" in r.stderr
    tuned = load(out)
    assert len(tuned.tokenizer) == V + 2 and tuned.tokenizer.vocab[:V] == src_model.tokenizer.vocab
    assert tuned.config.hidden == 32 and tuned.config.cell == "lstm"
    # on the source's own text the fine-tuned model is where the source was, not at a fresh model's level
    assert tuned.eval(TEXT)["loss_nats"] == pytest.approx(src_loss, abs=0.05)
    first = [m for m in metrics(out) if "train_loss" in m][0]["train_loss"]
    assert first < math.log(V + 2) - 0.8                # a model from scratch starts near log(V)
    scratch = d / "scratch"
    assert run("train", d / "new.txt", *sum(([f"--{k.replace('_', '-')}", v] for k, v in TINY.items()), []),
               "--max-steps", 1, "--out", scratch).exit_code == 0
    assert [m for m in metrics(scratch) if "train_loss" in m][0]["train_loss"] > math.log(V) - 0.2
    # where it came from: config.json, the model's metadata, charlm info
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["fine_tuned_from"]["path"] == os.path.abspath(d / "src" / "model.safetensors")
    assert cfg["fine_tuned_from"]["added"] == 2 and cfg["fine_tuned_from"]["step"] == 60
    _, meta = checkpoint.load_model(out)
    assert meta["extra"]["fine_tuned_from"] == cfg["fine_tuned_from"]
    info = run("info", out).stdout
    assert "fine-tuned from" in info and "src" in info and "(step 60)" in info


def test_fine_tune_skip_then_resume(source):
    d = source
    out = d / "skip"
    r = run("train", d / "new.txt", "--init-from", d / "src" / "model.safetensors", "--unknown", "skip",
            "--dropout", 0.0, "--max-steps", 2, "--out", out)
    assert r.exit_code == 0, r.output
    assert load(out).tokenizer.vocab == load(d / "src").tokenizer.vocab
    assert load(out).config.dropout == 0.0
    r = run("train", "--resume", out, "--max-steps", 3)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["fine_tuned_from"]["added"] == 0


def test_fine_tune_errors(source):
    d = source
    r = run("train", d / "new.txt", "--init-from", d / "src", "--out", d / "e1")
    assert r.exit_code == 2 and "'@'" in r.stderr and "--unknown skip" in r.stderr and "extend" in r.stderr
    assert "Traceback" not in r.output and not (d / "e1").exists()
    r = run("train", d / "new.txt", "--init-from", d / "src", "--hidden", 16, "--out", d / "e2")
    assert r.exit_code == 2 and "--hidden 16 contradicts" in r.stderr
    r = run("train", d / "new.txt", "--init-from", d / "src", "--level", "byte", "--out", d / "e3")
    assert r.exit_code == 2 and "--level byte contradicts" in r.stderr
    (d / "empty").mkdir()
    r = run("train", d / "new.txt", "--init-from", d / "empty", "--out", d / "e5")
    assert r.exit_code == 2 and "not a charlm run directory" in r.stderr and "Traceback" not in r.output
    r = run("train", "--resume", d / "src", "--init-from", d / "src")
    assert r.exit_code == 2 and "give one of them" in r.stderr
    r = run("train", d / "new.txt", "--unknown", "extend", "--out", d / "e4")
    assert r.exit_code == 2 and "--init-from" in r.stderr
    r = run("train", d / "new.txt", "--init-from", d / "src", "--unknown", "extend", "--print-config")
    assert r.exit_code == 0, r.output
    conf = json.loads(r.stdout)
    assert conf["model"]["hidden"] == 32 and conf["model"]["vocab_size"] == len(load(d / "src").tokenizer)
    assert conf["init_from"].endswith("model.safetensors")
