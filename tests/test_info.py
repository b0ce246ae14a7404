"""`charlm info` and charlm.inspect: per-layer parameter counts (PyTorch and Keras conventions),
the layer table of a ModelConfig, and the training summary of a run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clihelp import run

from charlm import checkpoint
from charlm.config import ModelConfig
from charlm.inspect import (
    dense_params,
    embedding_params,
    layers,
    model_summary,
    read_metrics,
    recurrent_params,
    training_summary,
)
from charlm.model import CharLM, count_params
from charlm.tokenizer import CharTokenizer

# ---------------------------------------------------------------- counts


@pytest.mark.parametrize("cell,keras,pytorch", [("rnn", 5_050, 5_100), ("lstm", 20_200, 20_400),
                                                ("gru", 15_150, 15_300)])
def test_recurrent_counts_50_on_50(cell, keras, pytorch):
    assert recurrent_params(cell, 50, 50) == pytorch
    # Keras GRU: reset_after=False has one bias (15,150); reset_after=True (TF2 default) two (15,300)
    assert recurrent_params(cell, 50, 50, keras=True, reset_after=False) == keras
    assert recurrent_params(cell, 50, 50, keras=True) == (15_300 if cell == "gru" else keras)


@pytest.mark.parametrize("cell,keras,pytorch", [("rnn", 5_050, 5_100), ("lstm", 20_200, 20_400),
                                                ("gru", 15_300, 15_300)])
def test_layer_table_of_a_model_config(cell, keras, pytorch):
    config = ModelConfig(vocab_size=10_000, cell=cell, layers=1, hidden=50, embed=50)
    emb, rec, head = layers(config)
    assert (emb.name, emb.shape, emb.params) == ("Embedding", ("seq", "batch", 50), 500_000)
    assert rec.shape == ("seq", "batch", 50) and rec.params == pytorch and "(layer 0)" in rec.name
    assert (head.shape, head.params) == (("seq", "batch", 10_000), 50 * 10_000 + 10_000)
    assert layers(config, keras=True)[1].params == keras
    assert model_summary(config)["total_params"] == count_params(config)


@pytest.mark.parametrize("cell,total", [("rnn", 506_715), ("lstm", 521_865), ("gru", 516_815)])
def test_course_example_keras_counts(cell, total):
    """Embedding(10000, 50) -> SimpleRNN/LSTM/GRU(50) -> Dense(32) -> Dense(1), as Keras' summary prints."""
    counts = [embedding_params(10_000, 50), recurrent_params(cell, 50, 50, keras=True, reset_after=False),
              dense_params(50, 32), dense_params(32, 1)]
    assert counts[0] == 500_000 and counts[2:] == [1_632, 33]
    assert sum(counts) == total


def test_counts_match_torch_modules():
    torch = pytest.importorskip("torch")
    for cell, cls in (("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        mod = cls(7, 5, num_layers=2)
        assert sum(p.numel() for p in mod.parameters()) == recurrent_params(cell, 7, 5) + recurrent_params(cell, 5, 5)


def test_one_hot_and_dropout_layers():
    config = ModelConfig(vocab_size=11, cell="lstm", layers=3, hidden=6, embed=0, dropout=0.25)
    table = layers(config)
    names = [layer.name for layer in table]
    assert names == ["One-hot input", "LSTM (layer 0)", "Dropout (0.25)", "LSTM (layer 1)", "Dropout (0.25)",
                     "LSTM (layer 2)", "Dense (head)"]
    assert table[0].shape == ("seq", "batch", 11) and table[0].params == 0
    assert table[1].params == 4 * 6 * (11 + 6) + 2 * 4 * 6
    assert table[3].params == 4 * 6 * (6 + 6) + 2 * 4 * 6
    assert sum(layer.params for layer in table) == count_params(config)


# ---------------------------------------------------------------- training summary


@pytest.fixture
def run_dir(tmp_path):
    tok = CharTokenizer.from_text("hello world\n")
    config = ModelConfig(vocab_size=len(tok), cell="lstm", layers=2, hidden=8, embed=4, dropout=0.1)
    d = tmp_path / "run"
    d.mkdir()
    extra = {"step": 40, "epoch": 2.0, "chars_seen": 40 * 4 * 10, "train_seconds": 3.5, "val_loss": 1.2,
             "val_bpc": 1.2 / np.log(2)}
    checkpoint.save_model(d, CharLM(config, seed=0).state_dict(), model_config=config.to_dict(),
                          tokenizer=tok.to_dict(), extra=extra)
    recs = [{"step": 20, "epoch": 1.0, "train_loss": 2.0, "train_bpc": 2.0 / np.log(2), "elapsed": 1.5},
            {"step": 20, "epoch": 1.0, "val_loss": 1.5, "val_bpc": 1.5 / np.log(2), "elapsed": 1.7},
            {"step": 40, "epoch": 2.0, "train_loss": 1.3, "train_bpc": 1.3 / np.log(2), "elapsed": 3.4},
            {"step": 40, "epoch": 2.0, "val_loss": 1.2, "val_bpc": 1.2 / np.log(2), "elapsed": 3.5},
            {"step": 60, "epoch": 3.0, "train_loss": 1.1, "train_bpc": 1.1 / np.log(2), "elapsed": 5.0},
            {"step": 60, "epoch": 3.0, "val_loss": 1.25, "val_bpc": 1.25 / np.log(2), "elapsed": 5.2}]
    lines = [json.dumps(r) for r in recs]
    (d / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n{\"step\": 4\n" + "\n".join(lines[3:]) + "\n")
    return d, config


def test_training_summary_reads_extra_and_metrics(run_dir):
    d, config = run_dir
    metrics = read_metrics(d)
    assert len(metrics) == 6                       # the line cut short is skipped
    t = training_summary(config, {"step": 40, "chars_seen": 1600, "train_seconds": 3.5}, metrics)
    assert t["steps"] == 60 and t["model_step"] == 40 and t["epochs"] == 3.0
    assert t["chars_seen"] == 2400                 # 1600 at step 40, scaled to the 60 steps run
    assert t["wall_seconds"] == 5.2
    assert t["best_val_loss"] == 1.2 and t["best_val_step"] == 40 and t["evaluations"] == 3
    assert t["best_val_bpc"] == pytest.approx(1.2 / np.log(2))
    assert t["last_train_loss"] == 1.1
    only_extra = training_summary(config, {"step": 40, "val_loss": 1.2, "chars_seen": 1600}, None)
    assert only_extra["steps"] == 40 and only_extra["best_val_step"] == 40 and only_extra["chars_seen"] == 1600
    assert training_summary(config, {}, None)["steps"] is None
    assert read_metrics(d / "nowhere") is None


def test_info_cli_text(run_dir):
    d, config = run_dir
    r = run("info", d)
    assert r.exit_code == 0, r.output
    out = r.stdout
    for want in ("Embedding", "(seq, batch, 4)", "LSTM (layer 0)", "LSTM (layer 1)", "Dropout (0.1)",
                 "Dense (head)", f"Total params: {count_params(config):,}", "best val loss", "1.2000 nats/char",
                 "at step 40", "characters seen", "2,400", "steps", "60 (model saved at step 40)", "lstm"):
        assert want in out, want
    assert out.index("Embedding") < out.index("LSTM (layer 0)") < out.index("Dropout") < out.index("Dense (head)")
    keras = run("info", d / "model.safetensors", "--keras").stdout
    G, H, E, V = 4, 8, 4, config.vocab_size
    keras_total = V * E + (G * H * (E + H) + G * H) + (G * H * (H + H) + G * H) + (H * V + V)
    assert f"Total params: {keras_total:,}" in keras and "Keras" in keras
    assert "60 (model saved" in keras               # model.safetensors inside RUN_DIR finds its metrics


def test_info_cli_json(run_dir):
    d, config = run_dir
    r = run("info", d, "--json")
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["model"]["total_params"] == count_params(config)
    assert [la["name"] for la in obj["model"]["layers"]][:2] == ["Embedding", "LSTM (layer 0)"]
    assert obj["model"]["layers"][1]["shape"] == ["seq", "batch", 8]
    assert obj["training"]["vocab_size"] == config.vocab_size and obj["training"]["steps"] == 60
    assert obj["model"]["config"] == config.to_dict()


def test_info_cli_errors(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"garbage that is not a model")
    r = run("info", bad)
    assert r.exit_code == 1 and "Error" in r.stderr and "Traceback" not in r.output
    r = run("info", tmp_path)                       # a directory without model.safetensors
    assert r.exit_code == 2 and "no such model file" in r.stderr


def test_training_summary_prefers_the_checkpoint_state(run_dir):
    d, config = run_dir
    metrics = read_metrics(d)
    t = training_summary(config, {"step": 40, "epoch": 2.0}, metrics, {"step": 80, "epoch": 4.0, "elapsed": 7.0})
    assert t["steps"] == 80 and t["epochs"] == 4.0 and t["wall_seconds"] == 7.0
    assert t["last_train_loss"] == 1.1 and t["last_train_step"] == 60
    t = training_summary(config, {"step": 40, "epoch": 2.0}, metrics[:1], {"step": 50})  # no epoch anywhere at 50
    assert t["steps"] == 50 and t["epochs"] == pytest.approx(2.5)     # 50 steps at 20 steps per epoch
    assert t["last_train_step"] == 20


def test_info_keras_note_names_gru_only_for_gru(run_dir):
    d, config = run_dir
    lstm = run("info", d, "--keras").stdout
    assert "Counted as Keras does" in lstm and "GRU" not in lstm and "reset_after" not in lstm
    tok = CharTokenizer.from_text("hello world\n")
    gru = ModelConfig(vocab_size=len(tok), cell="gru", layers=1, hidden=8, embed=4)
    path = checkpoint.save_model(d.parent / "gru.safetensors", CharLM(gru, seed=0).state_dict(),
                                 model_config=gru.to_dict(), tokenizer=tok.to_dict())
    assert "reset_after=True" in run("info", path, "--keras").stdout


def test_info_of_a_short_real_run(tmp_path):
    """A run shorter than --log-every: steps, epochs and the last train loss are those of its last step."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world, hello charlm!\n" * 40, encoding="utf-8")
    out = tmp_path / "run"
    r = run("train", corpus, "--cell", "lstm", "--layers", 1, "--hidden", 8, "--embed", 4, "--seq-len", 8,
            "--batch-size", 2, "--max-steps", 7, "--log-every", 5, "--eval-every", 100, "--out", out)
    assert r.exit_code == 0, r.output
    n = len(np.load(out / "ids.npy"))
    wpe = ((n - int(n * 0.1) - 1) // 2) // 8
    t = json.loads(run("info", out, "--json").stdout)["training"]
    last = [rec for rec in read_metrics(out) if "train_loss" in rec][-1]
    assert t["steps"] == 7 and t["last_train_step"] == 7 and last["step"] == 7
    assert t["epochs"] == pytest.approx(7 / wpe) and t["last_train_loss"] == last["train_loss"]
    text = run("info", out).stdout
    assert "at step 7" in text and f"{7 / wpe:.2f}" in text
