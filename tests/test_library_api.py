"""charlm.train with typed configs (data=, model=, train=, out=), dicts still accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import charlm
from charlm.config import DataConfig, ModelConfig, TrainConfig
from charlm.errors import UsageError

HELLO = Path(__file__).resolve().parents[1] / "corpora" / "hello.txt"
SMALL = dict(max_steps=3, seq_len=4, batch_size=2, eval_every=3, log_every=3, save_every=3, threads=1)


def config_of(run):
    return json.loads((Path(run) / "config.json").read_text())


def test_typed_configs(tmp_path):
    res = charlm.train(data=HELLO, model=ModelConfig(vocab_size=1, cell="gru", layers=1, hidden=6, embed=3),
                       train=TrainConfig(**SMALL), out=tmp_path / "a")
    assert res.status == "finished" and res.step == 3
    cfg = config_of(tmp_path / "a")
    assert (cfg["model"]["cell"], cfg["model"]["hidden"], cfg["model"]["embed"]) == ("gru", 6, 3)
    assert cfg["model"]["vocab_size"] == len(set(HELLO.read_text()))
    assert cfg["train"]["seq_len"] == 4 and cfg["train"]["lr"] == TrainConfig().lr
    assert charlm.load(tmp_path / "a").sample(length=5, seed=0)


def test_dicts_and_data_config(tmp_path):
    res = charlm.train(data=DataConfig(sources=(str(HELLO),)), model={"cell": "rnn", "layers": 1, "hidden": 5},
                       train=SMALL, out=tmp_path / "b")
    assert res.step == 3 and config_of(tmp_path / "b")["model"]["hidden"] == 5
    with pytest.raises(UsageError, match="unknown TrainConfig keys: bogus"):
        charlm.train(data=HELLO, train={"bogus": 1}, out=tmp_path / "c")
