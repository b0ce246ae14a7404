"""The training loop on CUDA: a run started on one device and resumed on the other gives the
same per-step losses as the mirror-image run (weights, optimizer state, carried hidden state
and dropout masks all cross devices through the checkpoint)."""

from __future__ import annotations

import json
import os

import pytest

from charlm.train import train

TEXT = "hello world, hello there. the cat sat on the mat. " * 4
OPTS = dict(cell="lstm", layers=2, hidden=4, embed=3, seq_len=3, batch_size=2, log_every=1, eval_every=100,
            save_every=2, val_frac=0.1, seed=3, dropout=0.2, lr=1e-2)


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [r["train_loss"] for r in rows if "train_loss" in r]


def test_resume_across_devices(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    runs = {}
    for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
        out = str(tmp_path / f"{first}-{second}")
        r = train([str(corpus)], {**OPTS, "device": first, "max_steps": 2, "out": out})
        assert (r.status, r.step) == ("finished", 2)
        r = train([], {"device": second, "max_steps": 4}, resume=out)
        assert (r.status, r.step) == ("finished", 4)
        runs[first] = losses(out)
    assert len(runs["cuda"]) == 4
    # float32 training trajectories on two devices (different reduction orders, Adam's sqrt) drift by
    # ~1e-5 relative within 4 steps (1.8e-5 seen); kernels themselves are checked to 1e-5 elsewhere
    assert runs["cuda"] == pytest.approx(runs["cpu"], rel=1e-4)
