"""Robustness matrix, bad inputs: every bad corpus, option or text ends in a short, clear error.

One test per row of the issue "every bad input gets a clear error": the exit code (2 for usage
errors, 1 for runtime errors), a key phrase on stderr naming the problem, no traceback, and at
most a few lines. Runs through Click's CliRunner on the real ``charlm.cli``; the rows where stdin
itself matters (empty, closed) run ``python -m charlm.cli`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from clihelp import assert_clean_error, assert_proc_error, run  # noqa: E402
from runhelp import FOX as TEXT  # noqa: E402
from runhelp import SHAPE, tiny_run, write_corpus  # noqa: E402

from charlm import checkpoint as ckpt
from charlm.tokenizer import CharTokenizer

TINY = [*SHAPE, "--max-steps", "1"]


@pytest.fixture
def text_file(tmp_path):
    return write_corpus(tmp_path)


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    """A real (tiny) trained run directory to sample from and resume."""
    return tiny_run(tmp_path_factory.mktemp("model"))


# ---------------------------------------------------------------- corpus rows


def test_corpus_missing_path(tmp_path):
    out = tmp_path / "run"
    r = run("train", tmp_path / "nope.txt", *TINY, "--out", out)
    assert_clean_error(r, 2, "no such file, directory or named corpus", "nope.txt", "Named corpora:")
    assert not (out / "config.json").exists()


def test_corpus_directory_without_text_files(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / ".hidden.txt").write_text("secret", encoding="utf-8")
    (d / "empty.txt").write_bytes(b"")
    (d / "image.bin").write_bytes(b"\x89PNG\x00\x00\x01")
    r = run("train", d, *TINY, "--out", tmp_path / "run")
    assert_clean_error(r, 2, "has no text files", "1 binary-looking", "change --glob")


def test_corpus_empty_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    r = run("train", p, *TINY, "--out", tmp_path / "run")
    assert_clean_error(r, 2, "empty.txt is empty", "give a file with text in it")


def test_corpus_whitespace_only(tmp_path):
    p = tmp_path / "blank.txt"
    p.write_text("  \n\t\n   \n", encoding="utf-8")
    r = run("train", p, *TINY, "--out", tmp_path / "run")
    assert_clean_error(r, 2, "only whitespace", "give it some text")


def test_corpus_invalid_utf8_and_errors_replace(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes(TEXT.encode() + b"caf\xe9 " + TEXT.encode())
    bad_at = len(TEXT.encode()) + 3
    r = run("train", p, *TINY, "--out", tmp_path / "run")
    assert_clean_error(r, 2, "latin.txt", f"invalid utf-8 at byte offset {bad_at}", "--encoding latin-1",
                       "--errors replace")
    ok = run("train", p, *TINY, "--errors", "replace", "--out", tmp_path / "run2")
    assert ok.exit_code == 0, ok.output
    assert "\ufffd" in CharTokenizer.load(str(tmp_path / "run2" / "tokenizer.json")).vocab


def test_corpus_binary_file(tmp_path):
    p = tmp_path / "a.out"
    p.write_bytes(b"\x7fELF" + b"\x00" * 12 + b"text after the header")
    r = run("train", p, *TINY, "--out", tmp_path / "run")
    assert_clean_error(r, 2, "a.out looks binary", "NUL byte at byte offset 4", "pass text files")


def test_corpus_shorter_than_one_window(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("abcdefghij", encoding="utf-8")
    r = run("train", p, "--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch-size", "4", "--val-frac", "0",
            "--max-steps", "1", "--out", tmp_path / "run")
    assert_clean_error(r, 2, "the text has 10 characters", "it needs at least 33",
                       "smaller --batch-size or --seq-len")


def test_corpus_vocabulary_over_cap(text_file, tmp_path):
    r = run("train", text_file, *TINY, "--vocab-cap", "5", "--out", tmp_path / "run")
    assert_clean_error(r, 2, "distinct symbols, over --vocab-cap 5", "raise the cap", "--unknown replace")
    ok = run("train", text_file, *TINY, "--vocab-cap", "5", "--unknown", "replace", "--out", tmp_path / "run2")
    assert ok.exit_code == 0, ok.output
    tok = CharTokenizer.load(str(tmp_path / "run2" / "tokenizer.json"))
    assert len(tok) == 5 + 1 and tok.unk_id == 5  # the 5 most frequent symbols, then the unknown id
    assert ckpt.load_model(tmp_path / "run2")[1]["model_config"]["vocab_size"] == 6


@pytest.mark.parametrize("stdin", ["empty", "closed"])
def test_corpus_stdin_empty_or_closed(tmp_path, stdin):
    kw = {"stdin": subprocess.DEVNULL} if stdin == "empty" else {"preexec_fn": lambda: os.close(0)}
    proc = subprocess.run([sys.executable, "-m", "charlm.cli", "train", "-", *TINY, "--out", "run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, **kw)
    assert_proc_error(proc, 2, f"stdin is {stdin}", "pipe text in")
    assert proc.stdout == ""


# ---------------------------------------------------------------- option rows

BAD_TRAIN_OPTIONS = [
    (["--hidden", "0"], "--hidden must be a positive integer"),
    (["--layers", "-1"], "--layers must be a positive integer"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--seq-len", "0"], "--seq-len must be >= 1"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--lr", "-0.01"], "--lr must be > 0"),
    (["--dropout", "1.0"], "--dropout must be in [0, 1)"),
    (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
    (["--cell", "transformer"], "'transformer' is not one of 'rnn', 'lstm', 'gru'"),
]


@pytest.mark.parametrize("flags,phrase", BAD_TRAIN_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_train_option_out_of_range(text_file, tmp_path, flags, phrase):
    out = tmp_path / "run"
    r = run("train", text_file, *TINY, *flags, "--out", out)
    assert_clean_error(r, 2, phrase)
    assert not out.exists()  # refused before anything touched the disk


BAD_SAMPLE_OPTIONS = [
    (["--temperature", "-0.5"], "--temperature must be >= 0"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--top-k", "-1"], "--top-k must be >= 0"),
]


@pytest.mark.parametrize("flags,phrase", BAD_SAMPLE_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_sample_option_out_of_range(model_run, flags, phrase):
    r = run("sample", model_run, "--length", "5", "--seed", "1", *flags)
    assert_clean_error(r, 2, phrase)
    assert r.stdout == ""


@pytest.mark.parametrize("flags,phrase", [
    (["--hidden", "16"], "--hidden 16 contradicts the run being resumed (hidden = 8)"),
    (["--cell", "gru"], "--cell gru contradicts the run being resumed (cell = lstm)"),
    (["--lr", "0.5"], "--lr 0.5 contradicts the run being resumed"),
    (["--out", "elsewhere"], "--out contradicts --resume"),
    (["other.txt"], "is not the run's"),
], ids=["hidden", "cell", "lr", "out", "corpus"])
def test_resume_with_contradicting_options(model_run, flags, phrase):
    before = {p.name: p.read_bytes() for p in model_run.iterdir() if p.is_file()}
    corpus = [f for f in flags if f.endswith(".txt")]
    opts = [f for f in flags if not f.endswith(".txt")]
    r = run("train", *corpus, "--resume", model_run, "--max-steps", "4", *opts)
    assert_clean_error(r, 2, phrase)
    assert "start a new run with --out" in r.stderr or "drop it when resuming" in r.stderr \
        or "continues in its own directory" in r.stderr
    assert {p.name: p.read_bytes() for p in model_run.iterdir() if p.is_file()} == before


def test_device_cuda_without_gpu_and_auto_fallback(text_file, tmp_path):
    from charlm.backends import _cuda_usable

    if _cuda_usable()[0]:
        pytest.skip("a usable GPU is present")
    r = run("train", text_file, *TINY, "--device", "cuda", "--out", tmp_path / "run")
    assert_clean_error(r, 2, "--device cuda: no usable GPU", "Use --device cpu, or --device auto")
    ok = run("train", text_file, *TINY, "--device", "auto", "--out", tmp_path / "run2")
    assert ok.exit_code == 0, ok.output
    assert "no usable GPU" in ok.stderr and "using the CPU" in ok.stderr
    assert (tmp_path / "run2" / "model.safetensors").exists()


# ---------------------------------------------------------------- text rows


def test_sample_prime_with_unseen_characters(model_run):
    r = run("sample", model_run, "--length", "5", "--seed", "1", "--prime", "Zé the")
    assert_clean_error(r, 2, "the prime has symbols the model never saw: 'Z', 'é'", "--unknown skip",
                       "--unknown replace")
    assert r.stdout == ""
    for policy, said in (("skip", "skipped symbols not in the vocabulary: 'Z', 'é'"),
                         ("replace", "replaced symbols not in the vocabulary ('Z', 'é')")):
        ok = run("sample", model_run, "--length", "5", "--seed", "1", "--prime", "Zé the", "--unknown", policy,
                 "--no-echo-prime")
        assert ok.exit_code == 0, ok.output
        assert said in ok.stderr
        assert len(ok.stdout) == 5


def test_eval_file_with_unseen_characters(model_run, tmp_path):
    p = tmp_path / "other.txt"
    p.write_text("the Zebra ate a crêpe", encoding="utf-8")
    r = run("eval", model_run, "--file", p)
    assert_clean_error(r, 2, "the text has symbols the model never saw", "'Z'", "'ê'", "--unknown skip")
    assert r.stdout == ""
    ok = run("eval", model_run, "--file", p, "--unknown", "skip", "--json")
    assert ok.exit_code == 0, ok.output
    assert "skipped 2 distinct symbols not in the vocabulary (2 occurrences)" in ok.stderr
    assert json.loads(ok.stdout)["chars"] == len("the Zebra ate a crêpe") - 2 - 1
