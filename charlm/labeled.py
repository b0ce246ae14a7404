"""Labeled text for the classifier and the tagger: readers, built-in tagging tasks, the
stratified split and the character vocabulary.

Classification data (``read_labeled``), one example per line or file:
    TSV (any name but .csv/.jsonl)   text<TAB>label (the LAST tab separates the label)
    CSV (.csv)                       text,label (a header row "text,label" is skipped)
    JSONL (.jsonl)                   {"text": ..., "label": ...}
    a directory                      one sub-directory per label, one text per file inside
A UTF-8 BOM and CRLF line ends are accepted. Blank lines are skipped. A line without a label,
with an empty text or an empty label is an error naming the line (``UsageError``).

Tagging data (``read_tagged``): JSONL {"text": ..., "tags": [...]}, one tag per character.
Built-in tasks (``tag_task``) make (input, tags) pairs from any plain text:
    spaces   input = the text without spaces, tag 1 = "a space follows this character"
    case     input = the text lowercased, tag 1 = "this character was upper case"

Vocabulary (``CharVocab``): id 0 = padding, id 1 = a character not seen in training, then the
training characters by frequency.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import UsageError

PAD, UNK = 0, 1
TAG_TASKS = ("spaces", "case")


def _read_text(path: Path) -> str:
    from .boundedread import read_file_bytes

    raw = read_file_bytes(path)   # bounded for FIFOs and devices; OS errors as one line
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text (byte {e.start}); convert the file to UTF-8") from None


def read_plain(path, notice=None) -> str:
    """The UTF-8 text of a file, of every file in a directory (sorted, joined by newlines), or of a
    named corpus (``docstrings``, ``fables``, ...: see ``charlm.corpora``) when no such path exists."""
    from . import corpora

    spec, path = str(path), Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return "\n".join(_read_text(f) for f in files)
    if not path.exists():
        if corpora.is_named(spec):
            return corpora.get(spec, notice=notice)
        raise UsageError(f"no such file, directory or named corpus: {spec} (named corpora: "
                         f"{', '.join(corpora.names())})")
    return _read_text(path)


def _lines(text: str):
    for n, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if line.strip():
            yield n, line


def read_labeled(path) -> list[tuple[str, str]]:
    """[(text, label)] from a TSV, CSV, JSONL file or a directory of label sub-directories."""
    path = Path(path)
    if path.is_dir():
        return _read_dir(path)
    if not path.exists():
        raise UsageError(f"no such file or directory: {path}")
    text = _read_text(path)
    suffix = path.suffix.lower()
    out = []
    if suffix == ".jsonl":
        for n, line in _lines(text):
            d = _json_line(path, n, line)
            out.append(_check_example(path, n, d.get("text"), d.get("label"), '{"text": ..., "label": ...}'))
    elif suffix == ".csv":
        rows = csv.reader(io.StringIO(text.replace("\r\n", "\n")))
        for n, row in enumerate(rows, 1):
            if not row or not "".join(row).strip():
                continue
            if n == 1 and [c.strip().lower() for c in row] == ["text", "label"]:
                continue
            if len(row) < 2:
                raise UsageError(f"{path}:{n}: no label: expected text,label")
            out.append(_check_example(path, n, ",".join(row[:-1]), row[-1], "text,label"))
    else:
        for n, line in _lines(text):
            if "\t" not in line:
                raise UsageError(f"{path}:{n}: no label: expected text<TAB>label")
            t, lab = line.rsplit("\t", 1)
            out.append(_check_example(path, n, t, lab, "text<TAB>label"))
    if not out:
        raise UsageError(f"{path}: no examples")
    return out


def _json_line(path, n, line):
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise UsageError(f"{path}:{n}: expected a JSON object")
    return d


def _check_example(path, n, text, label, form):
    if label is None or (isinstance(label, str) and not label.strip()):
        raise UsageError(f"{path}:{n}: no label: expected {form}")
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{path}:{n}: empty text")
    return text, str(label).strip()


def _read_dir(path: Path):
    subs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise UsageError(f"{path}: a data directory needs one sub-directory per label")
    out = []
    for sub in subs:
        for f in sorted(p for p in sub.rglob("*") if p.is_file() and not p.name.startswith(".")):
            t = _read_text(f).strip()
            if not t:
                raise UsageError(f"{f}: empty text")
            out.append((t, sub.name))
    if not out:
        raise UsageError(f"{path}: no files in the label sub-directories")
    return out


def read_tagged(path) -> list[tuple[str, list[str]]]:
    """[(text, tags)] from JSONL {"text": ..., "tags": [...]} (one tag per character)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    out = []
    for n, line in _lines(_read_text(path)):
        d = _json_line(path, n, line)
        text, tags = d.get("text"), d.get("tags")
        if not isinstance(text, str) or not text:
            raise UsageError(f"{path}:{n}: empty text")
        if not isinstance(tags, list):
            raise UsageError(f'{path}:{n}: no tags: expected {{"text": ..., "tags": [...]}}')
        if len(tags) != len(text):
            raise UsageError(f"{path}:{n}: {len(tags)} tags for {len(text)} characters: give one tag per character")
        out.append((text, [str(t) for t in tags]))
    if not out:
        raise UsageError(f"{path}: no examples")
    return out


def tag_task(text: str, task: str, max_len: int = 64) -> list[tuple[str, list[str]]]:
    """Built-in tagging examples from plain text, chunks of at most ``max_len`` input characters."""
    if task not in TAG_TASKS:
        raise UsageError(f"unknown --task {task!r}: choose {', '.join(TAG_TASKS)}")
    out = []
    for para in re.split(r"\n\s*\n|\n", text):
        words = para.split()
        if not words:
            continue
        if task == "spaces":
            chars, tags = [], []
            for w in words:
                chars.extend(w)
                tags.extend(["0"] * (len(w) - 1) + ["1"])
            tags[-1] = "0"  # nothing follows the last word
        else:
            s = " ".join(words)
            chars = list(s.lower())
            tags = ["1" if c != c.lower() else "0" for c in s]
        for i in range(0, len(chars), max_len):
            out.append(("".join(chars[i:i + max_len]), tags[i:i + max_len]))
    if not out:
        raise UsageError("the text has no words to make tagging examples from")
    return out


def apply_tags(text: str, tags, task: str) -> str:
    """Restore the text a built-in task removed: spaces after tag 1, upper case at tag 1."""
    if task == "spaces":
        return "".join(c + (" " if t == "1" else "") for c, t in zip(text, tags, strict=True)).rstrip(" ")
    return "".join(c.upper() if t == "1" else c for c, t in zip(text, tags, strict=True))


def stratified_split(labels, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): each label split val_frac / 1 - val_frac, at least one of each in train.

    A label with a single example is never in validation, so validation never holds a label
    the model was not trained on.
    """
    rng = np.random.default_rng(seed)
    by = {}
    for i, lab in enumerate(labels):
        by.setdefault(lab, []).append(i)
    tr, va = [], []
    for lab in sorted(by):
        idx = np.array(by[lab])
        rng.shuffle(idx)
        k = min(int(round(val_frac * len(idx))), len(idx) - 1)
        va.extend(idx[:k])
        tr.extend(idx[k:])
    return np.sort(np.array(tr, np.int64)), np.sort(np.array(va, np.int64))


class CharVocab:
    """Characters -> ids; 0 = padding, 1 = unseen character."""

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.index = {c: i + 2 for i, c in enumerate(self.chars)}

    @classmethod
    def from_texts(cls, texts) -> CharVocab:
        counts = Counter()
        for t in texts:
            counts.update(t)
        return cls([c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))])

    @property
    def size(self) -> int:
        return len(self.chars) + 2

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index.get(c, UNK) for c in text], np.int32)

    def to_dict(self) -> dict:
        return {"kind": "labeled-chars", "pad": PAD, "unknown": UNK, "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> CharVocab:
        return cls(d["chars"])


def check_labels(labels, what="label") -> list[str]:
    """Sorted distinct labels; a 1-class dataset is an error."""
    names = sorted(set(labels))
    if len(names) < 2:
        raise UsageError(f"only one {what} ({names[0]!r}) in the data: a classifier needs at least two")
    return names
