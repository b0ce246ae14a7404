"""`charlm sample`, `charlm eval`, `charlm score` through Click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from charlm.cli.sample import SEPARATOR
from clihelp import run
from test_generate import cycle_model, save

from charlm.config import ModelConfig
from charlm.errors import UsageError
from charlm.generate import load
from charlm.model import CharLM
from charlm.tokenizer import CharTokenizer

TEXT = "the cat sat on the mat.\nthe dog ate the hat!\n" * 3



@pytest.fixture
def abc(tmp_path):
    tok = CharTokenizer.from_text("abc\n")
    return cycle_model(tmp_path / "abc.safetensors", tok, list(tok.encode("abc\n")))


@pytest.fixture
def run_dir(tmp_path):
    """A run directory: model.safetensors + config.json pointing at a corpus file (val_frac 0.25)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    tok = CharTokenizer.from_text(TEXT)
    config = ModelConfig(vocab_size=len(tok), cell="gru", layers=1, hidden=8, embed=4)
    d = tmp_path / "run"
    d.mkdir()
    save(d / "model.safetensors", config, CharLM(config, seed=1).state_dict(), tok)
    cfg = {"corpus": {"sources": [str(corpus)], "encoding": "utf-8", "errors": "strict"},
           "model": config.to_dict(), "train": {"val_frac": 0.25}}
    (d / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return d


def test_sample_stdout_is_only_the_text(abc):
    r = run("sample", abc, "--length", 6, "--temperature", 0, "--prime", "ca", "--seed", 1)
    assert r.exit_code == 0, r.output
    assert r.stdout == "ca" + "bc\nabc"
    r = run("sample", abc, "-n", 3, "-t", 0, "--prime", "ca", "--no-echo-prime")
    assert r.stdout == "bc\n"
    assert "seed" not in r.stderr      # argmax needs no seed: nothing to announce
    r = run("sample", abc, "-n", 3, "-t", 0.5, "--prime", "ca", "--no-echo-prime")
    assert r.exit_code == 0 and r.stdout == "bc\n"
    assert "seed" in r.stderr          # a random seed is announced on stderr, not stdout


def test_sample_options(abc, tmp_path):
    r = run("sample", abc, "-n", 9, "-t", 0, "--stop", "zz", "--stop", "c\n")
    assert r.exit_code == 0 and r.stdout == "abc\n"
    r = run("sample", abc, "-n", 2, "-t", 0, "--num-samples", 3)
    assert r.stdout == SEPARATOR.join(["ab"] * 3)
    out = tmp_path / "out.txt"
    r = run("sample", abc, "-n", 4, "-t", 0, "--output", out)
    assert r.exit_code == 0 and r.stdout == "" and out.read_text(encoding="utf-8") == "abc\n"
    r = run("sample", abc, "-n", 2, "-t", 0, "--prime-file", "-", input="b")
    assert r.exit_code == 0 and r.stdout == "bc\n"
    pf = tmp_path / "prime.txt"
    pf.write_text("\n", encoding="utf-8")
    assert run("sample", abc, "-n", 2, "-t", 0, "--prime-file", pf).stdout == "\nab"


def test_sample_errors(abc):
    r = run("sample", abc, "--prime", "abZ", "-t", 0)
    assert r.exit_code == 2 and "'Z'" in r.stderr and r.stdout == ""
    r = run("sample", abc, "--prime", "abZ", "-t", 0, "-n", 1, "--unknown", "skip")
    assert r.exit_code == 0 and r.stdout == "abZc" and "skipped" in r.stderr
    assert run("sample", abc, "--prime", "a", "--prime-file", "-").exit_code == 2
    assert run("sample", abc, "--top-p", 0).exit_code == 2
    assert run("sample", abc, "--temperature", -1).exit_code == 2
    assert run("sample", abc / "nope").exit_code == 2


def test_sample_utf8_output(tmp_path):
    tok = CharTokenizer.from_text("é€\n")
    path = cycle_model(tmp_path / "u.safetensors", tok, list(tok.encode("é€\n")))
    r = run("sample", str(path), "-n", "4", "-t", "0")
    assert r.exit_code == 0 and r.stdout_bytes == "é€\né".encode()


def test_eval_json_and_text(run_dir, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("the hat sat.\n", encoding="utf-8")
    r = run("eval", run_dir, "--file", f, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert set(got) == {"loss_nats", "bpc", "perplexity", "chars"}
    want = load(run_dir).eval("the hat sat.\n")
    assert got["chars"] == 12 and got["loss_nats"] == pytest.approx(want["loss_nats"])
    r = run("eval", run_dir, "--file", f)
    assert r.exit_code == 0 and "bpc" in r.stdout and "perplexity" in r.stdout and "12" in r.stdout


def test_eval_split_and_errors(run_dir, tmp_path):
    r = run("eval", run_dir, "--split", "val", "--json")
    assert r.exit_code == 0, r.output
    m = load(run_dir)
    ids = m.tokenizer.encode(TEXT)
    val = ids[len(ids) - int(len(ids) * 0.25):]
    # scored like the training log's validation: the run's --batch-size streams (64 by default)
    assert json.loads(r.stdout)["loss_nats"] == pytest.approx(m.eval_streams(val, 64, 100)["loss_nats"])
    assert json.loads(r.stdout)["chars"] == val.size - 1
    r = run("eval", run_dir, "--split", "test")
    assert r.exit_code == 2 and "--test-frac 0.0" in r.stderr and "--file TEXT" in r.stderr
    assert run("eval", run_dir).exit_code == 2                       # neither --file nor --split
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "model.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes())
    r = run("eval", lone, "--split", "val")
    assert r.exit_code == 2 and "config.json" in r.stderr
    f = tmp_path / "z.txt"
    f.write_text("the Zcat", encoding="utf-8")
    r = run("eval", run_dir, "--file", f)
    assert r.exit_code == 2 and "'Z'" in r.stderr
    r = run("eval", run_dir, "--file", f, "--unknown", "skip", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["chars"] == 6 and "skipped 1 distinct symbol " in r.stderr
    f.write_text("the ZZcatZ Q", encoding="utf-8")   # distinct symbols and occurrences, each named
    r = run("eval", run_dir, "--file", f, "--unknown", "skip", "--json")
    assert r.exit_code == 0 and "skipped 2 distinct symbols not in the vocabulary (4 occurrences)" in r.stderr


def test_eval_split_of_an_imported_run(run_dir, tmp_path):
    imp = tmp_path / "imported"
    imp.mkdir()
    (imp / "model.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes())
    (imp / "config.json").write_text(json.dumps({"model": {}, "imported_from": "/x/torch.safetensors"}))
    r = run("eval", imp, "--split", "val")
    assert r.exit_code == 2 and "charlm import" in r.stderr and "--file TEXT" in r.stderr
    assert "not a valid run config" not in r.stderr


def test_unknown_wording_library_vs_cli(run_dir, tmp_path):
    m = load(run_dir)
    with pytest.raises(UsageError) as e:
        m.eval("the Zcat")
    assert 'unknown="skip"' in str(e.value) and "--unknown" not in str(e.value)
    with pytest.raises(UsageError) as e:
        m.sample(length=2, prime="Z", seed=1)
    assert 'unknown="skip"' in str(e.value) and "--unknown" not in str(e.value)
    r = run("sample", run_dir, "-n", 2, "--prime", "Z")
    assert r.exit_code == 2 and "--unknown skip" in r.stderr and 'unknown="' not in r.stderr


def test_score(run_dir, tmp_path):
    f = tmp_path / "lines.txt"
    f.write_text("the cat\n\nsat on\n", encoding="utf-8")
    r = run("score", run_dir, f)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["line"], x["chars"]) for x in rows] == [(1, 7), (2, 0), (3, 6)]
    assert rows[1]["bpc"] is None and np.isfinite(rows[0]["bpc"])


def test_sample_a_checkpoint_and_a_run_without_a_model(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT * 4, encoding="utf-8")
    out = tmp_path / "run"
    r = run("train", corpus, "--cell", "gru", "--layers", 1, "--hidden", 8, "--embed", 4, "--seq-len", 8,
            "--batch-size", 2, "--max-steps", 10, "--save-every", 5, "--eval-every", 100, "--keep", 3, "--out", out)
    assert r.exit_code == 0, r.output
    (out / "model.safetensors").unlink()            # as during training, before the first evaluation
    r = run("sample", out, "-n", 5)
    assert r.exit_code == 2 and "no model yet" in r.stderr and "step 100" in r.stderr
    assert f"charlm sample {out} --checkpoint 10" in r.stderr and "steps 5, 10" in r.stderr
    r = run("sample", out, "--checkpoint", 5, "-n", 6, "-t", 0, "--prime", "the")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("the") and len(r.stdout) == 9 and "step 5" in r.stderr
    from charlm.generate import load as load_model

    m5 = load_model(out, checkpoint=5)
    assert r.stdout == m5.sample(length=6, temperature=0, prime="the")
    assert not np.array_equal(m5.model.state_dict()["head.bias"],
                              load_model(out, checkpoint=10).model.state_dict()["head.bias"])
    path = out / "checkpoint-00000005.safetensors"
    r = run("sample", out, "--checkpoint", path, "-n", 6, "-t", 0, "--prime", "the")
    assert r.exit_code == 0 and r.stdout == m5.sample(length=6, temperature=0, prime="the")
    r = run("sample", out, "--checkpoint", 7)
    assert r.exit_code == 2 and "no checkpoint at step 7" in r.stderr and "5, 10" in r.stderr
    with pytest.raises(UsageError, match="checkpoint=10"):   # the library says it in Python
        load_model(out)


def test_stop_escapes(abc):
    from charlm.cli.sample import unescape

    assert unescape("\\n\\n") == "\n\n" and unescape("a\\tb\\\\n") == "a\tb\\n" and unescape("\\x41\\u00e9") == "Aé"
    assert unescape("\\q") == "\\q" and unescape("plain") == "plain" and unescape("\\U0001F44B") == "👋"
    r = run("sample", abc, "-n", 9, "-t", 0, "--stop", "c\\n")   # typed as backslash-n in a shell
    assert r.exit_code == 0 and r.stdout == "abc\n"
    r = run("sample", abc, "-n", 9, "-t", 0, "--stop", "\\U00110000")
    assert r.exit_code == 2 and "U+10FFFF" in r.stderr
