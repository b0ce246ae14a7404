"""Robustness matrix, a corpus directory that changes while charlm reads it (issue 13: no traceback,
no half-made run): a file or sub-directory that disappears while the tree is listed is skipped with a
notice; one that disappears, changes or becomes unreadable between or during the reading passes ends in
one line naming the file, and the fresh run directory is removed.
"""

from __future__ import annotations

import os
import shutil

import pytest
from clihelp import assert_clean_error, run

from charlm import sources, textstream

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 10
TINY = ["--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch-size", "2", "--max-steps", "1"]


@pytest.fixture
def corp(tmp_path):
    d = tmp_path / "corp"
    (d / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        (d / name).write_text(TEXT, encoding="utf-8")
    return d


def vanish_while_listing(monkeypatch, corp, victim):
    """os.walk of ``corp`` removes ``victim`` right after listing the top directory."""
    real = os.walk

    def walk(root, *a, **kw):
        for entry in real(root, *a, **kw):
            if os.path.samefile(entry[0], corp) and os.path.lexists(victim):
                shutil.rmtree(victim) if victim.is_dir() else os.unlink(victim)
            yield entry

    monkeypatch.setattr(sources.os, "walk", walk)


@pytest.mark.parametrize("victim", ["b.txt", "sub"])
def test_entry_gone_while_listing_is_skipped_with_a_notice(corp, tmp_path, monkeypatch, victim):
    vanish_while_listing(monkeypatch, corp, corp / victim)
    r = run("train", corp, *TINY, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "disappeared while the directory was read" in r.stderr and victim in r.stderr


def test_file_gone_at_the_sniff_is_skipped(corp, monkeypatch):
    real = open

    def opener(path, *a, **kw):
        if os.fspath(path).endswith("b.txt"):
            raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
        return real(path, *a, **kw)

    monkeypatch.setattr("builtins.open", opener)
    notes = []
    found = sources.expand_sources([corp], notice=notes.append)
    assert [s.path.name for s in found] == ["a.txt", "c.txt"]
    assert any("disappeared" in n and "b.txt" in n for n in notes)


def fail_on_open(monkeypatch, number, action):
    """The ``number``-th open of a corpus file (1, 2, 3: counting pass; 4, 5, 6: encoding) runs ``action``."""
    real, calls = textstream.open_binary, []

    def opener(path, label=None):
        calls.append(path)
        if len(calls) == number:
            return action(path, lambda: real(path, label))
        return real(path, label)

    monkeypatch.setattr(textstream, "open_binary", opener)


def _gone(path, reopen):
    os.unlink(path)
    return reopen()


def _changed(path, reopen):
    path.write_text("QUITE NEW SYMBOLS\n", encoding="utf-8")
    return reopen()


def _eio(path, reopen):
    f = reopen()

    class Broken:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            f.close()

        def read(self, n):
            raise OSError(5, "Input/output error")

    return Broken()


@pytest.mark.parametrize("number,action,phrases", [
    (2, _gone, ["b.txt disappeared while the corpus was being read", "run again"]),
    (5, _gone, ["b.txt disappeared while the corpus was being read"]),
    (5, _changed, ["b.txt changed while the corpus was being read", "'Q'", "run again"]),
    (2, _eio, ["cannot read", "b.txt: Input/output error", "became unreadable"]),
])
def test_file_changing_between_passes_is_one_line(corp, tmp_path, monkeypatch, number, action, phrases):
    fail_on_open(monkeypatch, number, action)
    out = tmp_path / "run"
    r = run("train", corp, *TINY, "--out", out)
    assert_clean_error(r, 2, *phrases)
    assert "stdout" not in r.stderr
    assert not out.exists()   # no half-made run directory
