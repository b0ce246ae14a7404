"""`charlm seq2seq train | translate | eval` and `charlm info` on a seq2seq run, through Click's CliRunner."""

from __future__ import annotations

import json

import pytest
from clihelp import assert_clean_error, run

from charlm.seq2seq_run import load


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s") / "run"
    r = run("seq2seq", "train", "reverse:n=300,max_len=5", "-o", d, "--hidden", 16, "--embed", 8,
            "--max-steps", 40, "--batch-size", 16, "--lr", 0.01, "--bidirectional", "--val-frac", 0.1)
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)
    assert metrics["steps"] == 40 and 0.0 <= metrics["val_exact"] <= 1.0
    assert "training pairs" in r.stderr
    return d


def test_translate_text_and_stdin_lines(run_dir):
    tr = load(run_dir)
    r = run("seq2seq", "translate", run_dir, "abc")
    assert r.exit_code == 0, r.output
    assert r.stdout == tr.translate("abc") + "\n"
    r = run("seq2seq", "translate", run_dir, "-", "--beam", 3, input="abc\nde\n\nxyz\n")
    assert r.exit_code == 0, r.output
    lines = r.stdout.split("\n")
    assert len(lines) == 5 and lines[2] == "" and lines[-1] == ""
    assert lines[0] == tr.translate("abc", method="beam", beam=3)
    r2 = run("seq2seq", "translate", run_dir, "--decode", "sample", "--seed", 4, input="abc\nde\n")
    r3 = run("seq2seq", "translate", run_dir, "--decode", "sample", "--seed", 4, input="abc\nde\n")
    assert r2.exit_code == 0 and r2.stdout == r3.stdout


def test_eval_prints_metrics(run_dir, tmp_path):
    p = tmp_path / "p.tsv"
    p.write_text("abc\tcba\nde\ted\n", encoding="utf-8")
    r = run("seq2seq", "eval", run_dir, p, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert set(res) == {"exact", "cer", "nats_per_char", "pairs"} and res["pairs"] == 2
    assert res == load(run_dir).evaluate([("abc", "cba"), ("de", "ed")])
    r = run("seq2seq", "eval", run_dir, "reverse:n=20,seed=5,max_len=5")
    assert r.exit_code == 0 and "exact match" in r.stdout


def test_info_shows_encoder_bridge_attention_decoder(run_dir):
    r = run("info", run_dir)
    assert r.exit_code == 0, r.output
    for part in ("encoder", "bridge", "attention", "decoder", "Total params"):
        assert part in r.stdout, part
    tr = load(run_dir)
    assert f"{tr.model.size:,}" in r.stdout
    k = run("info", run_dir, "--keras")
    assert k.exit_code == 0 and k.stdout != r.stdout


def test_bad_inputs_are_one_line_errors(run_dir, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("ab\tba\nnotab\n", encoding="utf-8")
    assert_clean_error(run("seq2seq", "train", bad, "-o", tmp_path / "x", "--max-steps", 1), 2, "line 2: no tab")
    assert_clean_error(run("seq2seq", "eval", run_dir, bad), 2, "line 2: no tab")
    assert_clean_error(run("seq2seq", "translate", run_dir, "ABC"), 2, "never saw", "--unknown")
    r = run("seq2seq", "translate", run_dir, "aBc", "--unknown", "skip")
    assert r.exit_code == 0 and "skipped" in r.stderr
    assert_clean_error(run("seq2seq", "translate", run_dir, "-", input="abc\nAB\n"), 2, "stdin line 2")
    long = tmp_path / "long.tsv"
    long.write_text("ab\tba\nabc\tabcdefghij\n", encoding="utf-8")
    assert_clean_error(run("seq2seq", "train", long, "-o", tmp_path / "y", "--max-steps", 1, "--max-target-len", 5),
                       2, "line 2", "--max-target-len 5")
    assert_clean_error(run("seq2seq", "translate", run_dir, "abc", "--beam", 0), 2, "--beam")
    assert_clean_error(run("seq2seq", "train", "reverse:n=50", "-o", tmp_path / "z", "--attention", "dot",
                           "--bidirectional", "--max-steps", 1), 2, "--attention dot")
    assert_clean_error(run("seq2seq", "train", "reverse:n=50", "-o", tmp_path / "w", "--bucket-width", 0,
                           "--max-steps", 1), 2, "--bucket-width")


def test_plot_attention_map_text_and_png(run_dir, tmp_path):
    r = run("plot", run_dir, "--attention-map", "abc")
    assert r.exit_code == 0, r.output
    lines = r.stdout.rstrip("\n").split("\n")
    target = load(run_dir).translate("abc")
    assert lines[0].strip() == "abc" and len(lines) == 1 + len(target) + 1 and lines[-1].startswith("EOS")
    r = run("plot", run_dir, "--attention-map", "abc", "--target", "cba")
    assert [ln[0] for ln in r.stdout.split("\n")[1:4]] == ["c", "b", "a"]
    pytest.importorskip("matplotlib")
    png = tmp_path / "att.png"
    r = run("plot", run_dir, "--attention-map", "abc", "-o", png)
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_attention_map_of_a_model_without_attention(tmp_path):
    d = tmp_path / "none"
    r = run("seq2seq", "train", "reverse:n=40,max_len=3", "-o", d, "--hidden", 8, "--embed", 4, "--max-steps", 2,
            "--attention", "none")
    assert r.exit_code == 0, r.output
    assert_clean_error(run("plot", d, "--attention-map", "abc"), 2, "--attention none")


def test_language_model_commands_name_the_seq2seq_command(run_dir):
    for args in (("sample", run_dir, "-n", 3), ("eval", run_dir, "--file", run_dir / "config.json")):
        assert_clean_error(run(*args), 2, "is a seq2seq model", "charlm seq2seq translate")


def test_shared_vocab_round_trips(tmp_path):
    d = tmp_path / "shared"
    r = run("seq2seq", "train", "dates:n=60", "-o", d, "--hidden", 8, "--embed", 4, "--max-steps", 2, "--shared-vocab")
    assert r.exit_code == 0, r.output
    tr = load(d)
    assert tr.src_vocab == tr.tgt_vocab and tr.meta["shared"] is True
    assert set("0123456789-") <= set(tr.src_vocab.chars) and set("March") <= set(tr.tgt_vocab.chars)
    assert "(shared)" in run("info", d).stdout


def test_exact_length_buckets_train_and_are_recorded(tmp_path):
    d = tmp_path / "exact"
    r = run("seq2seq", "train", "reverse:n=60,max_len=4", "-o", d, "--hidden", 8, "--embed", 4, "--max-steps", 3,
            "--bucket-width", 1)
    assert r.exit_code == 0, r.output
    assert load(d).meta["train"]["bucket_width"] == 1
