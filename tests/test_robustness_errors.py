"""Robustness matrix, round two: tracebacks turned into one-line errors, and answers that were wrong.

Issue 13's "Tracebacks" and "Wrong or misleading answers" lists, one row each. Rows about the
process's own stdout (closed, /dev/full, a pipe closed early) run ``python -m charlm.cli`` in a
subprocess; the others run in-process through CliRunner.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import numpy as np
import pytest
from clihelp import assert_clean_error, assert_proc_error, run
from prochelp import charlm_cmd as charlm
from runhelp import FOX as TEXT
from runhelp import SHAPE, SHAPE_OPTS, tiny_run, write_corpus

from charlm import checkpoint as ckpt
from charlm import memory, rundir
from charlm.train import train

TINY = [*SHAPE, "--max-steps", "2"]
OPTS = {**SHAPE_OPTS, "max_steps": 2}


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path)


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("model"), eval_every=1)


@pytest.fixture
def own_run(corpus, tmp_path):
    """A run this test may damage."""
    out = tmp_path / "run"
    assert train([str(corpus)], {**OPTS, "out": str(out), "eval_every": 1}).status == "finished"
    return out


# ---------------------------------------------------------------- stdout: closed, full, closed early

STDOUT_CMDS = {"sample": ["sample", "{run}", "--length", "50", "--seed", "1"],
               "eval": ["eval", "{run}", "--file", "{corpus}"],
               "info": ["info", "{run}"]}


def _cmd(name, model_run):
    return [a.format(run=model_run, corpus=model_run.parent / "corpus.txt") for a in STDOUT_CMDS[name]]


@pytest.mark.parametrize("name", list(STDOUT_CMDS))
def test_stdout_closed(model_run, name):
    proc = subprocess.run(charlm(*_cmd(name, model_run)), capture_output=False, stdout=None, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(1), timeout=300)
    assert_proc_error(proc, 1, "stdout is closed", "redirect it")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("name", list(STDOUT_CMDS))
def test_stdout_on_a_full_disk(model_run, name):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(charlm(*_cmd(name, model_run)), stdout=full, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=300)
    assert_proc_error(proc, 1, "No space left on device")


def test_sample_into_a_pipe_closed_early_exits_0(model_run):
    p = subprocess.Popen(charlm("sample", model_run, "--length", "200000", "--seed", "1"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    p.stdout.read(10)   # what `| head -c 10` reads, then it goes away
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err


# ---------------------------------------------------------------- codecs


@pytest.mark.parametrize("cmd", ["vocab", "train", "eval"])
def test_non_text_codec(corpus, model_run, tmp_path, cmd):
    args = {"vocab": ["vocab", corpus], "train": ["train", corpus, *TINY, "--out", tmp_path / "run"],
            "eval": ["eval", model_run, "--file", corpus]}[cmd]
    r = run(*args, "--encoding", "rot13")
    assert_clean_error(r, 2, "rot13", "text encoding")
    assert not (tmp_path / "run").exists()


def test_utf16_without_bom(tmp_path):
    p = tmp_path / "u16.txt"
    p.write_bytes(TEXT.encode("utf-16-be"))   # no BOM; read as utf-16 (little-endian without a BOM)
    for enc in ("utf-16", "utf-16-le", "utf-16-be"):
        r = run("vocab", p, "--encoding", enc)
        assert r.exit_code in (0, 2), r.output
        assert "Traceback" not in r.output
        if r.exit_code == 2:
            assert_clean_error(r, 2, str(p))
    odd = tmp_path / "odd.txt"
    odd.write_bytes(TEXT.encode("utf-16-le") + b"x")   # a truncated last code unit
    r = run("vocab", odd, "--encoding", "utf-16-le")
    assert_clean_error(r, 2, "odd.txt", "invalid utf-16-le")


# ---------------------------------------------------------------- wrong types in TOML and config.json


@pytest.mark.parametrize("line,phrase", [('lr = "0.1"', "lr must be a number, got '0.1'"),
                                         ("seq_len = 16.5", "seq-len must be a whole number, got 16.5"),
                                         ("hidden = true", "hidden must be a whole number, got True"),
                                         ('shuffle_offsets = "yes"', "shuffle-offsets must be true or false")])
def test_toml_wrong_types(corpus, tmp_path, line, phrase):
    cfg = tmp_path / "c.toml"
    cfg.write_text(line + "\n", encoding="utf-8")
    out = tmp_path / "run"
    flag = "--" + line.split(" =")[0].replace("_", "-")
    flags = [a for i, a in enumerate(TINY) if flag not in (a, TINY[i - 1] if i else "")]   # TOML's value applies
    r = run("train", corpus, *flags, "--config", cfg, "--out", out)
    assert_clean_error(r, 2, phrase)
    assert not out.exists()   # refused before training, so nothing half-made is left


@pytest.mark.parametrize("toml,flags,phrase", [
    (None, ["--max-time", "soon"], "--max-time: 'soon' is not a duration"),
    ('max-time = "soon"\n', [], "max_time in "),
    ("hidden = [\n", [], "is not valid TOML"),
    ("bogus = 1\n", [], "--config: unknown keys in"),
    (None, ["--threads", "-1"], "--threads must be >= 0"),
])
def test_train_usage_errors_are_one_style(corpus, tmp_path, toml, flags, phrase):
    """The CLI's own checks raise click.UsageError: exit 2, 'Error: ...' on stderr, the option named."""
    cfg = []
    if toml is not None:
        (tmp_path / "c.toml").write_text(toml, encoding="utf-8")
        cfg = ["--config", tmp_path / "c.toml"]
    r = run("train", corpus, *TINY, *flags, *cfg, "--out", tmp_path / "run")
    assert_clean_error(r, 2, "Error: ", phrase)
    assert "Invalid value for" not in r.stderr


def test_model_commands_threads_usage_error(model_run):
    assert_clean_error(run("sample", model_run, "--threads", "-1"), 2, "--threads must be >= 0 (0 = all cores)")


@pytest.mark.parametrize("damage", ["list", "lr string", "seq_len float", "corpus list"])
def test_config_json_wrong_shape_or_types(own_run, damage):
    path = own_run / rundir.CONFIG
    cfg = json.loads(path.read_text())
    if damage == "list":
        cfg = [cfg]
    elif damage == "lr string":
        cfg["train"]["lr"] = "0.1"
    elif damage == "seq_len float":
        cfg["train"]["seq_len"] = 16.5
    else:
        cfg["corpus"] = ["x"]
    path.write_text(json.dumps(cfg))
    r = run("train", "--resume", own_run, "--max-steps", "4")
    assert_clean_error(r, 2, f"{path} is not a valid run config")
    r = run("eval", own_run, "--split", "val")
    assert r.exit_code in (0, 2) and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("line", [b"[1, 2, 3]", b'{"step": "7", "train_loss": 1.0}', b"\xff\xfe not utf-8 \xc3",
                                  b'{"step": 1e308, "train_loss": 1e308, "val_loss": 1e308, "elapsed": 1e308}',
                                  b'{"step": 2, "train_loss": "x", "elapsed": "soon"}'])
def test_metrics_jsonl_odd_lines(own_run, line):
    with open(own_run / rundir.METRICS, "ab") as f:
        f.write(line + b"\n")
    for args in (["info", own_run], ["info", own_run, "--json"], ["plot", own_run]):
        r = run(*args)
        assert r.exit_code == 0, (args, r.output)
    r = run("train", "--resume", own_run, "--max-steps", "3", "--log-every", "1")
    assert r.exit_code == 0, r.output
    for raw in (own_run / rundir.METRICS).read_bytes().splitlines():
        rec = json.loads(raw)   # the odd line was dropped on resume; every line left is a record
        assert isinstance(rec, dict) and isinstance(rec["step"], int)


def test_ids_npy_directory_on_resume(own_run):
    os.unlink(own_run / rundir.IDS)
    os.mkdir(own_run / rundir.IDS)
    r = run("train", "--resume", own_run, "--max-steps", "4")
    assert_clean_error(r, 2, f"{own_run / rundir.IDS} is a directory")


@pytest.mark.parametrize("pattern", ["[z-a]", "[a-"])
def test_bad_glob(tmp_path, pattern):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text(TEXT)
    r = run("vocab", d, "--glob", pattern)
    assert r.exit_code in (0, 2) and "Traceback" not in r.output, r.output
    if pattern == "[z-a]":
        assert_clean_error(r, 2, "bad --glob '[z-a]'")


@pytest.mark.parametrize("where", ["corpus", "out", "model", "eval file"])
def test_path_longer_than_path_max(corpus, model_run, tmp_path, where):
    long = str(tmp_path / ("a" * 300) / ("b" * 300) / ("c" * 5000))
    args = {"corpus": ["train", long, *TINY, "--out", tmp_path / "run"],
            "out": ["train", corpus, *TINY, "--out", long],
            "model": ["sample", long, "--length", "3"],
            "eval file": ["eval", model_run, "--file", long]}[where]
    r = run(*args)
    assert r.exit_code in (1, 2), r.output
    assert_clean_error(r, r.exit_code)


# ---------------------------------------------------------------- memory estimates before allocating


def test_huge_hidden_is_refused_with_an_estimate(corpus, tmp_path):
    out = tmp_path / "run"
    r = run("train", corpus, "--hidden", "20000", "--max-steps", "1", "--out", out)
    assert_clean_error(r, 2, "needs about", "GiB of memory", "smaller --hidden")
    assert not out.exists()


def test_model_over_available_memory_after_reading_the_corpus(corpus, tmp_path, monkeypatch):
    """The exact estimate (vocabulary known) comes after the corpus is read: no half-made run dir."""
    need_small, _ = memory.train_bytes(__import__("charlm.config", fromlist=["x"]).ModelConfig(
        vocab_size=1, hidden=64, embed=4), __import__("charlm.config", fromlist=["x"]).TrainConfig(
        seq_len=8, batch_size=2))
    monkeypatch.setattr(memory, "available_bytes", lambda: need_small + 1)
    out = tmp_path / "run"
    r = run("train", corpus, "--hidden", "64", "--embed", "4", "--seq-len", "8", "--batch-size", "2",
            "--max-steps", "1", "--out", out)
    assert_clean_error(r, 2, "needs about", "of memory, more than")
    assert not out.exists()


def test_huge_num_samples_is_refused_with_an_estimate(model_run):
    r = run("sample", model_run, "--num-samples", "100000000", "--length", "5", "--seed", "1")
    assert_clean_error(r, 2, "sampling 100,000,000 sequences at once needs about", "lower --num-samples")
    assert r.stdout == ""


def test_big_model_prints_its_estimate(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "NOTICE_BYTES", 1)
    r = run("train", corpus, *TINY, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "needs about" in r.stderr and "of memory" in r.stderr


# ---------------------------------------------------------------- wrong or misleading answers


def test_non_finite_weights_are_refused(model_run, tmp_path):
    sd, meta = ckpt.load_model(model_run)
    sd["head.bias"] = sd["head.bias"].copy()
    sd["head.bias"][0] = np.nan
    bad = tmp_path / "nan.safetensors"
    ckpt.save_model(bad, sd, model_config=meta["model_config"], tokenizer=meta["tokenizer"], extra=meta["extra"])
    r = run("sample", bad, "--length", "5", "--seed", "1")
    assert_clean_error(r, 1, "'head.bias' holds NaN or infinite values", "earlier checkpoint")
    r = run("eval", bad, "--file", model_run.parent / "corpus.txt", "--json")
    assert_clean_error(r, 1, "NaN or infinite")
    assert r.stdout == ""


def test_tiny_temperature_acts_as_argmax(model_run):
    greedy = run("sample", model_run, "--length", "40", "--temperature", "0", "--no-echo-prime")
    tiny = run("sample", model_run, "--length", "40", "--temperature", "5e-324", "--seed", "1", "--no-echo-prime")
    assert greedy.exit_code == 0 and tiny.exit_code == 0, tiny.output
    assert tiny.stdout == greedy.stdout and len(tiny.stdout) == 40


def test_eval_split_refuses_a_changed_corpus(own_run, corpus):
    ok = run("eval", own_run, "--split", "val", "--json")
    assert ok.exit_code == 0, ok.output
    os.unlink(own_run / rundir.IDS)          # force a re-read of the corpus
    corpus.write_text(TEXT.replace("lazy", "hazy"), encoding="utf-8")
    r = run("eval", own_run, "--split", "val", "--json")
    assert_clean_error(r, 2, "the corpus has changed since", "pass --file TEXT")


def test_eval_split_of_a_stdin_run_uses_its_ids(tmp_path):
    out = tmp_path / "run"
    r = run("train", "-", *TINY, "--eval-every", "1", "--out", out, input=TEXT)
    assert r.exit_code == 0, r.output
    r = run("eval", out, "--split", "val", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["chars"] == int(len(TEXT) * 0.1) - 1


def test_resume_names_an_edited_tokenizer(own_run):
    path = own_run / rundir.TOKENIZER
    tok = json.loads(path.read_text(encoding="utf-8"))
    tok["vocab"] = tok["vocab"][1:] + tok["vocab"][:1]   # the same symbols, permuted
    if tok.get("counts"):
        tok["counts"] = tok["counts"][1:] + tok["counts"][:1]
    path.write_text(json.dumps(tok), encoding="utf-8")
    r = run("train", "--resume", own_run, "--max-steps", "4")
    assert_clean_error(r, 2, f"{path} differs from the vocabulary saved in the run's checkpoint")


def test_resume_names_a_corpus_with_new_symbols(own_run, corpus):
    with open(corpus, "a", encoding="utf-8") as f:
        f.write("Zebra!\n")
    r = run("train", "--resume", own_run, "--max-steps", "4")
    assert_clean_error(r, 2, "the corpus has changed since this run started", "'Z'", "tokenizer.json")
    assert "--unknown" not in r.stderr   # train has no such fix for a resumed run


def test_out_shadowing_a_named_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("train", "hello", *TINY, "--out", "hello")
    assert_clean_error(r, 2, "--out hello would shadow the named corpus 'hello'")
    assert not (tmp_path / "hello").exists()


def test_out_inside_its_corpus_directory(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text(TEXT)
    r = run("train", notes, *TINY, "--out", notes / "run1")
    assert_clean_error(r, 2, "is inside the corpus directory", "outside it")
    assert sorted(os.listdir(notes)) == ["a.txt"]


def test_info_truncates_huge_metadata(model_run, tmp_path):
    sd, meta = ckpt.load_model(model_run)
    big = tmp_path / "big.safetensors"
    ckpt.save_model(big, sd, model_config=meta["model_config"], tokenizer=meta["tokenizer"],
                    extra={**meta["extra"], "imported_from": "x" * 3_000_000})
    r = run("info", big)
    assert r.exit_code == 0, r.output
    assert len(r.stdout) < 10_000 and "2,999,800 more characters; charlm info --full shows all" in r.stdout
    r = run("info", big, "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)["training"]["imported_from"]
    assert len(r.stdout) < 10_000 and shown.startswith("x" * 4096) and "2,995,904 more characters" in shown
    r = run("info", big, "--json", "--full")
    assert json.loads(r.stdout)["training"]["imported_from"] == "x" * 3_000_000


def test_printed_commands_quote_paths_with_spaces(corpus, tmp_path):
    out = tmp_path / "my runs" / "first run"
    r = run("train", corpus, *TINY, "--out", out)
    assert r.exit_code == 0, r.output
    assert f"charlm sample {shlex.quote(str(out))}" in r.stderr
