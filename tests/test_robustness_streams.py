"""Robustness matrix, streams: no input hangs or eats memory (issue 13, items 6-7; issue 19.7).

FIFOs without a writer, /dev/zero, endless stdin, process substitution (``<(cmd)``, a pipe under
/dev/fd) and a resumed stdin run, each run for real through the CLI.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from clihelp import assert_clean_error, run  # noqa: E402
from runhelp import FOX as TEXT  # noqa: E402
from runhelp import SHAPE, SHAPE_OPTS, tiny_run  # noqa: E402

from charlm import boundedread, rundir
from charlm.errors import UsageError
from charlm.tokenizer import CharTokenizer

TINY = [*SHAPE, "--max-steps", "2"]
OPTS = {**SHAPE_OPTS, "max_steps": 2}

needs_dev_zero = pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")


@pytest.fixture
def fifo(tmp_path, monkeypatch):
    monkeypatch.setattr(boundedread, "FIFO_WAIT", 0.2)
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return p


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("model"))


def piped(data: bytes) -> str:
    """A /dev/fd path of a pipe that a thread fills with ``data`` (what bash's ``<(cmd)`` passes)."""
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            f.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return f"/dev/fd/{r}"


# ---------------------------------------------------------------- item 6: FIFOs and devices


@pytest.mark.parametrize("cmd", ["train", "vocab"])
def test_fifo_without_writer_does_not_hang(fifo, tmp_path, cmd):
    out = tmp_path / "run"
    args = ["train", fifo, *TINY, "--out", out] if cmd == "train" else ["vocab", fifo]
    r = run(*args)
    assert_clean_error(r, 2, f"{fifo} is a FIFO and nothing was written to it", "start its writer first")
    assert not out.exists()   # no run directory (and no .lock) left behind


@needs_dev_zero
def test_dev_zero_as_utf16_corpus_is_refused(tmp_path):
    r = run("vocab", "/dev/zero", "--encoding", "utf-16-le")
    assert_clean_error(r, 2, "/dev/zero looks binary", "NUL characters")
    r = run("train", "/dev/zero", *TINY, "--encoding", "utf-16-le", "--out", tmp_path / "run")
    assert_clean_error(r, 2, "/dev/zero looks binary")
    assert not (tmp_path / "run").exists()


def test_endless_stdin_is_bounded(tmp_path):
    r = run("vocab", "-", "--max-bytes", "1K", input="abc " * 1000)
    assert_clean_error(r, 2, "<stdin> holds more than 1 KiB", "--max-bytes SIZE")
    r = run("train", "-", *TINY, "--max-bytes", "1K", "--out", tmp_path / "run", input="abc " * 1000)
    assert_clean_error(r, 2, "<stdin> holds more than 1 KiB")
    assert not (tmp_path / "run").exists()
    ok = run("vocab", "-", "--max-bytes", "8K", input="abc " * 1000)
    assert ok.exit_code == 0, ok.output


@needs_dev_zero
@pytest.mark.parametrize("how", ["eval", "score", "prime-file"])
def test_dev_zero_texts_are_bounded(model_run, how):
    args = {"eval": ["eval", model_run, "--file", "/dev/zero"], "score": ["score", model_run, "/dev/zero"],
            "prime-file": ["sample", model_run, "--prime-file", "/dev/zero", "--length", "3"]}[how]
    r = run(*args, "--max-bytes", "1M")
    assert_clean_error(r, 2, "/dev/zero holds more than 1 MiB", "--max-bytes SIZE")
    assert r.stdout == ""


def test_regular_text_over_the_limit_is_refused_before_reading(model_run, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text(TEXT * 10, encoding="utf-8")
    r = run("eval", model_run, "--file", big, "--max-bytes", "1K")
    assert_clean_error(r, 2, f"{big} is {big.stat().st_size:,} bytes, over the limit of 1 KiB")


@needs_dev_zero
def test_dev_zero_tokenizer_is_bounded(model_run, tmp_path):
    with pytest.raises(UsageError, match="/dev/zero holds more than"):
        CharTokenizer.load("/dev/zero")
    r = run("import", model_run / rundir.MODEL, "--cell", "lstm", "--tokenizer", "/dev/zero",
            "--out", tmp_path / "imp")
    assert_clean_error(r, 2, "/dev/zero holds more than")


def test_fifo_with_a_writer_is_read(fifo, model_run):
    def feed():
        with open(fifo, "wb") as f:
            f.write(b"the lazy dog\n")

    threading.Thread(target=feed, daemon=True).start()
    r = run("eval", model_run, "--file", fifo, "--json")
    assert r.exit_code == 0, r.output
    assert '"chars": 12' in r.stdout


# ---------------------------------------------------------------- item 7: <(cat corpus.txt)


def test_process_substitution_corpus_is_read_once(tmp_path):
    out = tmp_path / "run"
    r = run("train", piped(TEXT.encode()), *TINY, "--out", out)
    assert r.exit_code == 0, r.output
    assert f"corpus: {len(TEXT):,} characters" in r.stderr
    assert np.load(out / rundir.IDS).size == len(TEXT)


# ---------------------------------------------------------------- issue 19.7: resuming a stdin run


def test_resume_stdin_run_uses_saved_ids(tmp_path):
    out = tmp_path / "run"
    r = run("train", "-", *TINY, "--save-every", "1", "--out", out, input=TEXT)
    assert r.exit_code == 0, r.output
    r = run("train", "--resume", out, "--max-steps", "4")   # no text on stdin this time
    assert r.exit_code == 0, r.output
    assert "resuming" in r.stderr and "from step 2" in r.stderr
    assert [n for n in os.listdir(out) if "tmp" in n] == []


@pytest.mark.parametrize("damage", ["missing", "directory"])
def test_resume_stdin_run_with_damaged_ids(tmp_path, damage):
    out = tmp_path / "run"
    r = run("train", "-", *TINY, "--out", out, input=TEXT)
    assert r.exit_code == 0, r.output
    os.unlink(out / rundir.IDS)
    if damage == "directory":
        os.mkdir(out / rundir.IDS)
    for _ in range(2):
        r = run("train", "--resume", out, "--max-steps", "4")
        assert_clean_error(r, 2, str(out / rundir.IDS), "start a new run with --out")
    assert [n for n in os.listdir(out) if "tmp" in n] == []
