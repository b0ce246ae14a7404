"""Training: learning, run-directory contents, exact resume, divergence, budgets, CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from clihelp import run
from runhelp import PANGRAMS as TEXT
from runhelp import metrics, write_corpus

from charlm import checkpoint as ckpt
from charlm.errors import UsageError
from charlm.train import evaluate_ids, train

TINY = dict(cell="lstm", layers=1, hidden=16, embed=8, seq_len=16, batch_size=4, log_every=1,
            eval_every=10, save_every=5, val_frac=0.1, seed=3)


@pytest.fixture
def corpus(tmp_path):
    return str(write_corpus(tmp_path, TEXT))


def test_loss_falls_and_run_dir_is_complete(corpus, tmp_path):
    out = str(tmp_path / "run")
    res = train([corpus], {**TINY, "max_steps": 60, "out": out, "lr": 1e-2})
    assert res.status == "finished" and res.step == 60 and res.exit_code == 0
    rows = [r for r in metrics(out) if "train_loss" in r]
    assert rows[0]["train_loss"] > math.log(20) * 0.8  # starts near uniform
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 1.0
    for key in ("step", "epoch", "train_loss", "lr", "grad_norm", "chars_per_sec"):
        assert key in rows[-1]
    vals = [r for r in metrics(out) if "val_loss" in r]
    assert vals and all(math.isclose(r["val_bpc"], r["val_loss"] / math.log(2)) for r in vals)
    for name in ("model.safetensors", "checkpoint.safetensors", "tokenizer.json", "config.json"):
        assert os.path.exists(os.path.join(out, name)), name
    sd, meta = ckpt.load_model(os.path.join(out, "model.safetensors"))
    assert meta["model_config"]["cell"] == "lstm" and "rnn.weight_ih_l0" in sd
    assert meta["extra"]["val_loss"] == pytest.approx(res.best_val)


def test_hello_memorization():
    """The classic RNN-course example: memorize a short string with Adam at lr 0.1."""
    from charlm.config import ModelConfig, TrainConfig
    from charlm.model import CharLM
    from charlm.optim import Optimizer
    from charlm.tokenizer import CharTokenizer

    s = "hello! world"
    tok = CharTokenizer.from_text(s)
    ids = tok.encode(s)
    x = ids[:-1].reshape(-1, 1).astype(np.int32)
    y = ids[1:].reshape(-1, 1).astype(np.int32)
    model = CharLM(ModelConfig(vocab_size=len(tok), cell="rnn", layers=1, hidden=16, embed=0), seed=0)
    opt = Optimizer(TrainConfig(lr=0.1, clip_norm=0), model)
    for _ in range(100):
        loss, _ = model.train_step(x, y, model.init_state(1))
        opt.clip()
        opt.step(0.1)
    assert loss < 0.05
    logits, _ = model.logits(x, model.init_state(1))
    assert tok.decode(logits[:, 0].argmax(-1)) == s[1:]


@pytest.mark.parametrize("dropout,schedule", [(0.0, "constant"), (0.3, "constant"), (0.3, "cosine")])
def test_resume_is_exact(corpus, tmp_path, monkeypatch, dropout, schedule):
    """A run interrupted at step 8 (SIGINT, as Ctrl-C) and resumed logs the same losses as one that was not."""
    import signal

    from charlm.model import CharLM

    opts = {**TINY, "layers": 2, "dropout": dropout, "lr_schedule": schedule, "max_steps": 20}
    full = str(tmp_path / "full")
    train([corpus], {**opts, "out": full})
    part = str(tmp_path / "part")
    real, calls = CharLM.train_step, {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 8:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *a, **k)

    monkeypatch.setattr(CharLM, "train_step", interrupted)
    res = train([corpus], {**opts, "out": part})
    assert res.status == "interrupted" and res.step == 8 and res.exit_code == 130
    monkeypatch.setattr(CharLM, "train_step", real)
    res = train([], {}, resume=part)
    assert res.step == 20
    a = {r["step"]: r["train_loss"] for r in metrics(full) if "train_loss" in r}
    b = {r["step"]: r["train_loss"] for r in metrics(part) if "train_loss" in r}
    assert sorted(b) == sorted(a)
    for step in range(9, 21):
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-6), step


def test_resume_refuses_contradicting_options(corpus, tmp_path):
    out = str(tmp_path / "run")
    train([corpus], {**TINY, "max_steps": 3, "out": out})
    with pytest.raises(UsageError, match="--hidden 32 contradicts"):
        train([], {"hidden": 32, "max_steps": 6}, resume=out)
    with pytest.raises(UsageError, match="already holds a run"):
        train([corpus], {**TINY, "max_steps": 3, "out": out})


def test_divergence_keeps_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    from charlm.model import CharLM

    out = str(tmp_path / "run")
    real = CharLM.train_step
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        loss, state = real(self, *a, **k)
        return (float("nan") if calls["n"] == 8 else loss), state

    monkeypatch.setattr(CharLM, "train_step", flaky)
    res = train([corpus], {**TINY, "max_steps": 50, "out": out})
    assert res.status == "diverged" and res.exit_code == 1 and res.step == 5  # rolled back to the last checkpoint
    _, meta, _ = ckpt.load_checkpoint(out)
    assert meta["step"] == 5  # the last checkpoint written before the NaN
    ckpt.load_model(os.path.join(out, "model.safetensors"))


def test_budgets_and_epochs(corpus, tmp_path):
    out = str(tmp_path / "run")
    res = train([corpus], {**TINY, "max_epochs": 1.0, "out": out})
    rows = [r for r in metrics(out) if "train_loss" in r]
    assert res.step == rows[-1]["step"] and rows[-1]["epoch"] == pytest.approx(1.0)


def test_evaluate_covers_every_position():
    class Counting:
        """Stand-in model: loss 1 nat per position, so the mean is 1 and the count is exact."""

        def __init__(self):
            self.count = 0

        def init_state(self, b):
            return None

        def loss(self, x, y, state):
            self.count += x.size
            assert np.array_equal(x.shape, y.shape)
            return float(x.size), x.size, state

    m = Counting()
    ids = np.arange(1000) % 7
    assert evaluate_ids(m, ids, 8, 10) == pytest.approx(1.0)
    assert m.count == len(ids) - 1


def test_small_corpus_shrinks_defaults(tmp_path):
    p = tmp_path / "small.txt"
    p.write_text("abcdefghij" * 30, encoding="utf-8")
    notes = []
    res = train([str(p)], {"max_steps": 2, "hidden": 8, "embed": 4, "out": str(tmp_path / "r")},
                notice=notes.append)
    assert res.step == 2
    assert any("corpus is small" in n for n in notes)
    with pytest.raises(UsageError):
        train([str(p)], {"max_steps": 2, "seq_len": 500, "batch_size": 64, "out": str(tmp_path / "r2")})


def test_cli_train_and_print_config(corpus, tmp_path):
    out = str(tmp_path / "run")
    r = run("train", corpus, "--max-steps", "3", "--hidden", "8", "--embed", "4",
            "--seq-len", "8", "--batch-size", "2", "--out", out)
    assert r.exit_code == 0, r.output
    assert os.path.exists(os.path.join(out, "model.safetensors"))
    cfg = tmp_path / "c.toml"
    cfg.write_text('hidden = 12\ncell = "gru"\nmax-time = "2m"\n', encoding="utf-8")
    r = run("train", corpus, "--config", str(cfg), "--hidden", "20", "--print-config")
    assert r.exit_code == 0, r.output
    conf = json.loads(r.stdout)
    assert conf["model"]["cell"] == "gru" and conf["model"]["hidden"] == 20 and conf["train"]["max_time"] == 120.0
    from charlm.config import ModelConfig, TrainConfig  # both sections in full: every field, defaults included
    assert set(conf["model"]) == set(ModelConfig(vocab_size=1).to_dict()) and conf["model"]["vocab_size"] is None
    assert conf["model"]["layers"] == ModelConfig(vocab_size=1).layers and conf["model"]["dropout"] == 0.1
    assert set(conf["train"]) == set(TrainConfig().to_dict())
    for bad in (["--lr", "0"], ["--dropout", "1.5"], ["--seq-len", "0"], ["--hidden", "-3"],
                ["--cell", "transformer"], ["--max-time", "soon"]):
        r = run("train", corpus, "--out", str(tmp_path / "x"), *bad)
        assert r.exit_code == 2, (bad, r.output)
        assert "Traceback" not in r.output


def test_patience_keep_and_sample_every(corpus, tmp_path):
    out = str(tmp_path / "run")
    notes = []
    res = train([corpus], {**TINY, "max_steps": 400, "eval_every": 2, "save_every": 2, "keep": 2,
                           "patience": 1, "lr": 0.5, "optimizer": "sgd", "momentum": 0.0,
                           "sample_every": 2, "out": out}, notice=notes.append)
    # a huge SGD step makes validation worse at once: patience 1 stops at the first bad evaluation
    assert res.status == "early-stopped" and res.step < 400
    ckpts = sorted(p for p in os.listdir(out) if p.startswith("checkpoint"))
    assert len(ckpts) <= 2 and "checkpoint.safetensors" in ckpts


def test_train_from_stdin_and_named_corpus(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(TEXT.encode()), encoding="utf-8"))
    res = train(["-"], {**TINY, "max_steps": 2, "out": str(tmp_path / "stdin")})
    assert res.step == 2
    res = train(["hello"], {"cell": "rnn", "layers": 1, "hidden": 8, "embed": 0, "max_steps": 2,
                            "val_frac": 0.0, "out": str(tmp_path / "hello")})
    assert res.step == 2 and os.path.exists(tmp_path / "hello" / "model.safetensors")


def test_byte_level_run_holds_all_256_bytes(corpus, tmp_path):
    from charlm.tokenizer import CharTokenizer

    out = tmp_path / "bytes"
    r = run("train", corpus, "--level", "byte", "--cell", "rnn", "--layers", "1", "--hidden", "8",
            "--embed", "4", "--seq-len", "8", "--batch-size", "2", "--max-steps", "2",
            "--out", str(out))
    assert r.exit_code == 0, r.output
    tok = CharTokenizer.load(out / "tokenizer.json")
    assert tok.vocab == list(range(256))
    r = run("sample", str(out), "--prime", "never seen ∑", "-n", "3", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("never seen ∑")


@pytest.mark.parametrize("val_split", ["tail", "each"])
def test_eval_split_val_matches_the_training_log(corpus, tmp_path, val_split):
    """`charlm eval RUN --split val` gives the log's best validation loss: same characters, same scoring."""
    other = tmp_path / "other.txt"
    other.write_text(TEXT[::-1], encoding="utf-8")
    out = tmp_path / "run"
    notes = []
    train([corpus, str(other)], {**TINY, "max_steps": 20, "val_split": val_split, "out": str(out)},
          notice=notes.append)
    where = {"tail": "--val-split tail: the last 10% of the concatenated corpus",
             "each": "--val-split each: the last 10% of each of the 2 sources"}[val_split]
    assert any(where in n for n in notes), notes
    best = min(r["val_loss"] for r in metrics(out) if "val_loss" in r)
    r = run("eval", str(out), "--split", "val", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["loss_nats"] == pytest.approx(best, rel=1e-5) and "scored as the training log" in r.stderr
    n = len(TEXT)
    assert got["chars"] == (2 * int(n * 0.1) if val_split == "each" else int(2 * n * 0.1)) - 1
    from charlm.generate import load

    one_stream = load(out).eval_ids(load(out).tokenizer.encode(TEXT[::-1][-int(n * 0.1):]))
    assert one_stream["chars"] == int(n * 0.1) - 1   # --file scoring: one state through the text
