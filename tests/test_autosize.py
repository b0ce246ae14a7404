"""Budget-aware model size (charlm.autosize): the rule, flags win, resume keeps the choice,
the printed line, config.json and --print-config. Nothing here is timed: the calibration is
replaced by a fixed speed wherever a time budget is used."""

from __future__ import annotations

import json
import os

import pytest
from clihelp import run
from runhelp import PANGRAMS as TEXT
from runhelp import write_corpus

from charlm import autosize
from charlm.config import TrainConfig
from charlm.train import train

SMALL = dict(embed=8, seq_len=16, batch_size=4, log_every=1, eval_every=10, save_every=5, val_frac=0.1, seed=3)


@pytest.fixture
def corpus(tmp_path):
    return str(write_corpus(tmp_path, TEXT))


@pytest.fixture
def fixed_speed(monkeypatch):
    """The calibration reports 40k chars/s without running anything."""
    calls = []

    def measure(cell, embed, vocab, device, threads=0):
        calls.append((cell, embed, vocab, device))
        return 40_000.0

    monkeypatch.setattr(autosize, "measure_reference", measure)
    return calls


def never(*args, **kw):
    raise AssertionError("the calibration must not run")


def config_json(run_dir):
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


# ----- the rule -----------------------------------------------------------------------------------
def test_more_budget_never_picks_a_smaller_model():
    sizes = []
    for minutes in (0.5, 1, 3, 10, 30, 120, 600):
        c = autosize.choose(TrainConfig(max_time=60 * minutes), cell="lstm", embed=64, vocab=100,
                            train_chars=50_000_000, measure=lambda *a: 40_000.0)
        sizes.append(autosize.n_params("lstm", c.layers, c.hidden, 64, 100))
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1]  # the table is actually used, not one fixed answer


def test_steps_and_epochs_budgets_choose_by_characters_without_calibration():
    by_steps = autosize.choose(TrainConfig(max_steps=20_000), cell="gru", embed=64, vocab=100,
                               train_chars=10_000_000, measure=never)
    # 20k steps x 64 x 100 = 128M characters, 12.8 epochs: the biggest 2-layer candidate, heavy dropout
    assert (by_steps.layers, by_steps.hidden, by_steps.chars) == (2, 512, 128_000_000)
    assert by_steps.dropout == 0.2 and by_steps.chars_per_sec is None and by_steps.calibration_seconds == 0
    assert by_steps.lr == TrainConfig().lr  # two layers: the default rate
    tiny = autosize.choose(TrainConfig(max_epochs=1), cell="gru", embed=64, vocab=100, train_chars=5_000,
                           measure=never)
    assert (tiny.layers, tiny.hidden) == autosize.SIZES[0] and tiny.dropout == 0.0
    assert "1 epochs" in tiny.line and "gru 1x128" in tiny.line


def test_a_small_corpus_caps_the_model():
    """The same 128M characters over a 100k-character corpus repeat it 1,280 times: a smaller model."""
    big = autosize.choose(TrainConfig(max_steps=20_000), cell="lstm", embed=64, vocab=100,
                          train_chars=10_000_000, measure=never)
    small = autosize.choose(TrainConfig(max_steps=20_000), cell="lstm", embed=64, vocab=100,
                            train_chars=100_000, measure=never)
    assert autosize.n_params("lstm", small.layers, small.hidden, 64, 100) < \
        autosize.n_params("lstm", big.layers, big.hidden, 64, 100)


def test_speed_class_makes_nearby_speeds_choose_alike():
    assert autosize.speed_class(40_000) == autosize.speed_class(41_000)
    assert autosize.speed_class(40_000) != autosize.speed_class(80_000)
    a, b = (autosize.choose(TrainConfig(max_time=180), cell="lstm", embed=64, vocab=100, train_chars=10**7,
                            measure=lambda *args, s=s: s) for s in (40_000.0, 41_000.0))
    assert (a.layers, a.hidden, a.chars_per_sec) == (b.layers, b.hidden, b.chars_per_sec)


def test_a_faster_machine_gets_a_bigger_model_in_the_same_time():
    slow, fast = (autosize.choose(TrainConfig(max_time=180), cell="lstm", embed=64, vocab=100,
                                  train_chars=10**8, measure=lambda *args, s=s: s) for s in (5_000.0, 500_000.0))
    assert autosize.n_params("lstm", fast.layers, fast.hidden, 64, 100) > \
        autosize.n_params("lstm", slow.layers, slow.hidden, 64, 100)
    assert "3m00s on this machine" in slow.line and "chars/s" in slow.line


# ----- through training ---------------------------------------------------------------------------
def test_choice_is_printed_recorded_and_kept_on_resume(corpus, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    said = []
    res = train([corpus], {**SMALL, "max_steps": 3, "out": out}, notice=said.append)
    assert res.status == "finished"
    lines = [s for s in said if "pass --layers/--hidden to choose yourself" in s]
    assert len(lines) == 1 and lines[0].startswith("3 steps: gru 1x128")
    saved = config_json(out)
    assert saved["autosize"]["line"] == lines[0]
    assert (saved["model"]["cell"], saved["model"]["layers"], saved["model"]["hidden"]) == ("gru", 1, 128)
    assert (saved["autosize"]["layers"], saved["autosize"]["hidden"]) == (1, 128)

    monkeypatch.setattr(autosize, "choose", never)  # resuming with a bigger budget never re-chooses
    said.clear()
    res = train([], {"max_steps": 5}, resume=out, notice=said.append)
    assert res.step == 5
    assert not [s for s in said if "choose yourself" in s]
    assert config_json(out) == saved


def test_explicit_size_flags_turn_the_choice_off(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(autosize, "choose", never)
    for flag in ({"hidden": 24}, {"layers": 1}):
        out = str(tmp_path / f"run-{next(iter(flag))}")
        train([corpus], {**SMALL, **flag, "max_steps": 2, "out": out})
        saved = config_json(out)
        assert "autosize" not in saved
        assert all(saved["model"][k] == v for k, v in flag.items())


def test_explicit_cell_dropout_and_lr_win_inside_the_choice(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(autosize, "dropout_for", lambda layers, epochs: 0.25)
    out = str(tmp_path / "run")
    train([corpus], {**SMALL, "cell": "rnn", "dropout": 0.05, "lr": 1e-3, "max_steps": 2, "out": out})
    saved = config_json(out)
    assert saved["model"]["cell"] == "rnn" and saved["model"]["dropout"] == 0.05 and saved["train"]["lr"] == 1e-3
    assert saved["autosize"]["cell"] == "rnn" and saved["autosize"]["lr"] == autosize.LR_ONE_LAYER
    out2 = str(tmp_path / "run2")
    train([corpus], {**SMALL, "max_steps": 2, "out": out2})
    saved = config_json(out2)  # not given: the choice's values
    assert saved["model"]["dropout"] == 0.25 and saved["train"]["lr"] == autosize.LR_ONE_LAYER
    assert saved["model"]["cell"] == autosize.CELL


def test_weight_decay_only_where_the_data_repeats_most():
    assert autosize.weight_decay_for(2, autosize.DROPOUT_EPOCHS + 0.5) == autosize.WEIGHT_DECAY > 0
    assert autosize.weight_decay_for(2, autosize.DROPOUT_EPOCHS) == 0.0
    assert autosize.weight_decay_for(1, 50.0) == 0.0
    long = autosize.choose(TrainConfig(max_time=3600.0), cell="gru", embed=64, vocab=65, train_chars=1_000_000,
                           measure=lambda *a: 40_000.0)
    assert long.layers == 2 and long.epochs > autosize.DROPOUT_EPOCHS
    assert long.train_options == {"lr": long.lr, "optimizer": "adamw", "weight_decay": autosize.WEIGHT_DECAY}
    short = autosize.choose(TrainConfig(max_steps=10), cell="gru", embed=64, vocab=65, train_chars=1_000_000)
    assert short.weight_decay == 0.0 and short.train_options == {"lr": short.lr}


def test_explicit_optimizer_or_weight_decay_wins_both(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(autosize, "weight_decay_for", lambda layers, epochs: 0.05)
    cases = [({}, "adamw", 0.05), ({"optimizer": "sgd"}, "sgd", 0.0), ({"optimizer": "adam"}, "adam", 0.0),
             ({"weight_decay": 0.0}, "adam", 0.0), ({"weight_decay": 0.2}, "adam", 0.2)]
    for k, (flags, optimizer, decay) in enumerate(cases):
        out = str(tmp_path / f"run{k}")
        train([corpus], {**SMALL, **flags, "max_steps": 2, "out": out})
        saved = config_json(out)
        assert (saved["train"]["optimizer"], saved["train"]["weight_decay"]) == (optimizer, decay), flags
        assert saved["autosize"]["weight_decay"] == 0.05  # what was chosen is recorded either way


def test_time_budget_calibrates_once_and_counts_it(corpus, tmp_path, fixed_speed):
    out = str(tmp_path / "run")
    res = train([corpus], {**SMALL, "cell": "gru", "max_time": 30.0, "max_steps": 2, "out": out})
    assert res.step == 2
    assert len(fixed_speed) == 1 and fixed_speed[0][0] == "gru"
    choice = config_json(out)["autosize"]
    assert choice["speed_class"] == autosize.speed_class(40_000) and choice["chars_per_sec"] > 0
    assert choice["line"].startswith("30s / 2 steps on this machine: gru 1x128")


def test_print_config_shows_the_choice_and_creates_nothing(corpus, tmp_path, fixed_speed):
    out = tmp_path / "run"
    r = run("train", corpus, "--max-time", "3m", "--embed", "8", "--out", str(out),
            "--print-config")
    assert r.exit_code == 0, r.output
    conf = json.loads(r.stdout)
    assert conf["autosize"]["layers"] == conf["model"]["layers"]
    assert conf["autosize"]["hidden"] == conf["model"]["hidden"]
    assert "choose yourself" in r.stderr and not out.exists()
    r = run("train", corpus, "--max-time", "3m", "--hidden", "8", "--print-config")
    assert r.exit_code == 0 and "autosize" not in json.loads(r.stdout)


def test_init_from_keeps_the_source_model(corpus, tmp_path, monkeypatch):
    src = str(tmp_path / "src")
    train([corpus], {**SMALL, "hidden": 24, "max_steps": 2, "out": src})
    monkeypatch.setattr(autosize, "choose", never)
    out = str(tmp_path / "tuned")
    train([corpus], {"max_steps": 2, "init_from": src, "out": out})
    saved = config_json(out)
    assert "autosize" not in saved and saved["model"]["hidden"] == 24


def test_verdict_names_the_bpc_and_what_it_means():
    import math

    assert autosize.verdict(1.9 * math.log(2)).startswith("val 1.90 bpc: fair")
    assert autosize.verdict(1.2 * math.log(2)).startswith("val 1.20 bpc: good")
    assert autosize.verdict(2.5 * math.log(2)).startswith("val 2.50 bpc: early")
    assert autosize.verdict(4.0 * math.log(2)).startswith("val 4.00 bpc: barely started")


def test_cli_training_ends_with_the_choice_line_first_and_a_verdict_last(corpus, tmp_path):
    out = str(tmp_path / "run")
    r = run("train", corpus, "--max-steps", "3", "--embed", "8", "--seq-len", "16",
            "--batch-size", "4", "--out", out)
    assert r.exit_code == 0, r.output
    lines = r.stderr.strip().splitlines()
    assert sum("pass --layers/--hidden to choose yourself" in line for line in lines) == 1
    assert lines[-1].startswith("val ") and " bpc: " in lines[-1]


def test_a_size_in_the_toml_config_counts_as_given(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(autosize, "choose", never)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nhidden = 12\n", encoding="utf-8")
    r = run("train", corpus, "--config", str(cfg), "--max-steps", "2", "--print-config")
    assert r.exit_code == 0, r.output
    conf = json.loads(r.stdout)
    assert "autosize" not in conf and conf["model"]["hidden"] == 12
