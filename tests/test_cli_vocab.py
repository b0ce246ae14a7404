"""``charlm vocab`` through Click: stdout for results, stderr for errors and notices, exit codes."""

import json

import clihelp
import pytest


@pytest.fixture
def run():
    return lambda *args, input=None: clihelp.run("vocab", *args, input=input)


def test_human_output(run, tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("aaab\tb안\n", encoding="utf-8")
    r = run(str(p), "--top", "2", "--vocab-cap", "2")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "characters:  8" in out and "vocabulary:  5 distinct symbols" in out
    assert "'a'" in out and "'\\t'" in out and "'\\n'" in out
    assert "--vocab-cap 2: keeps 2 symbols, drops 3; 3 characters (37.500%) would be unknown" in out
    assert r.stderr == ""


def test_json_is_one_object_on_stdout(run):
    r = run("hello", "--json", "--vocab-cap", "3")
    assert r.exit_code == 0 and r.stderr == ""
    d = json.loads(r.stdout)
    assert d["sources"] == ["corpus:hello"] and d["symbols"] == 13 and d["vocab_size"] == 10
    assert d["most_common"][0] == {"symbol": "l", "repr": "'l'", "count": 3, "fraction": 3 / 13}
    assert d["vocab_cap"]["unknown_symbols"] == 13 - 3 - 2 - 1  # keeps l (3), o (2), "\n" (1, lowest)


def test_byte_level_and_stdin(run):
    r = run("-", "--level", "byte", "--json", input="안녕".encode())
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["level"] == "byte" and d["symbols"] == 6 and d["sources"] == ["<stdin>"]
    assert all(isinstance(row["symbol"], int) for row in d["most_common"])
    r = run("-", input="plain words")
    assert r.exit_code == 0 and "bytes:" not in r.stdout and "characters:  11" in r.stdout


def test_nfc_option(run):
    r = run("-", "--normalize", "nfc", "--json", input="e\u0301".encode())
    assert json.loads(r.stdout)["symbols"] == 1
    r = run("-", "--json", input="e\u0301".encode())
    assert json.loads(r.stdout)["symbols"] == 2


@pytest.mark.parametrize("args, input, message", [
    (["/no/such/file.txt"], None, "no such file, directory or named corpus"),
    (["-"], b"", "stdin is empty"),
    (["-"], b"ok \xff", "invalid utf-8 at byte offset 3"),
    (["-"], b"  \n ", "only whitespace"),
    (["-", "--encoding", "klingon"], b"x", "unknown --encoding"),
])
def test_usage_errors_exit_2_on_stderr(run, args, input, message):
    r = run(*args, input=input)
    assert r.exit_code == 2 and r.stdout == ""
    assert message in r.stderr and "Traceback" not in r.stderr


def test_errors_replace_and_glob(run, tmp_path):
    (tmp_path / "a.txt").write_bytes(b"ab\xff")
    (tmp_path / "b.md").write_text("zz", encoding="utf-8")
    r = run(str(tmp_path), "--glob", "*.txt", "--errors", "replace", "--json")
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["symbols"] == 3 and {row["symbol"] for row in d["most_common"]} == {"a", "b", "\ufffd"}


def test_notices_go_to_stderr(run, tmp_path):
    (tmp_path / "a.txt").write_text("text", encoding="utf-8")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    r = run(str(tmp_path), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["symbols"] == 4
    assert "binary-looking" in r.stderr


def test_click_usage_errors(run):
    assert run().exit_code == 2  # CORPUS is required
    r = run("hello", "--level", "word")
    assert r.exit_code == 2 and "Invalid value" in r.stderr
    assert run("hello", "--vocab-cap", "0").exit_code == 2
