"""Shared test data and tiny runs: the texts, tiny model shapes and run-directory readers that the
trainer, CLI and robustness tests use (one definition each)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from charlm import rundir

FOX = "the quick brown fox jumps over the lazy dog.\n" * 20   # no capitals, no 'é'
PANGRAMS = ("The quick brown fox jumps over the lazy dog. " * 40 +
            "Pack my box with five dozen liquor jugs! " * 40)
SHAPE_OPTS = {"hidden": 8, "embed": 4, "seq_len": 8, "batch_size": 2}   # the robustness tests' tiny model
SHAPE = ["--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch-size", "2"]   # the same as flags


def write_corpus(directory, text: str = FOX, name: str = "corpus.txt") -> Path:
    p = Path(directory) / name
    p.write_text(text, encoding="utf-8")
    return p


def tiny_run(directory, text: str = FOX, **options) -> Path:
    """Train the tiny model (2 steps unless ``options`` say otherwise) on ``text`` into directory/run."""
    from charlm.train import train

    corpus = write_corpus(directory, text)
    out = Path(directory) / "run"
    res = train([str(corpus)], {**SHAPE_OPTS, "max_steps": 2, **options, "out": str(out)})
    assert res.status == "finished", res
    return out


def metrics(run_dir) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl."""
    with open(os.path.join(run_dir, rundir.METRICS), encoding="utf-8") as f:
        return [json.loads(line) for line in f]
