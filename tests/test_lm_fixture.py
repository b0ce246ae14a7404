"""Run directories written before the layer stack still load, sample and evaluate unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clihelp import run

import charlm

FIXTURES = Path(__file__).parent / "fixtures" / "lm_v1"
CORPUS = Path(__file__).resolve().parents[1] / "corpora"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_old_run_dir_samples_and_evaluates_unchanged(cell):
    d = FIXTURES / cell
    r = run("sample", d, "--length", 60, "--seed", 7, "--prime", "ROMEO:")
    assert r.exit_code == 0, r.output
    assert r.stdout == (d / "sample_seed7.txt").read_text(encoding="utf-8")
    want = json.loads((d / "eval.json").read_text())
    got = charlm.load(d).eval((CORPUS / "verse.txt").read_text(encoding="utf-8")[:500])
    assert got["chars"] == want["chars"]
    assert abs(got["loss_nats"] - want["loss_nats"]) < 1e-5
