"""The ``docstrings`` corpus: English prose from the docstrings of the local standard library.

Like ``stdlib`` it is built on the user's machine (nothing downloaded or committed) from the
same files in the same order (``stdlib.stdlib_files``). Each docstring is cut into paragraphs
(blank lines) and a paragraph is kept only if it reads as plain prose: at least ``MIN_WORDS``
words, every word letters only (with an inner apostrophe or hyphen, one trailing punctuation
mark), ending with ``.``, ``?`` or ``!``; no doctest (``>>>``) or reST literal (``::``). Kept
paragraphs are joined into one line each (whitespace collapsed), repeats dropped, until
``max_bytes``. The result -- about 320 KB on CPython 3.11 -- is a few hundred thousand
characters of varied English sentences, enough for a word-spacing tagger to generalise
(``charlm tag train docstrings --task spaces``). Cached beside the stdlib corpus.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from . import stdlib

MAX_BYTES = 1_000_000
MIN_WORDS = 6
FORMAT = 1
WORD = re.compile(r"(?:[A-Z]?[a-z]+|[A-Z]+)(?:['-](?:[A-Z]?[a-z]+|[A-Z]+))*[,.;:?!]?")  # no CamelCase identifiers


def prose(doc: str) -> list[str]:
    """The plain-prose paragraphs of one docstring, each as one line."""
    out = []
    for para in re.split(r"\n\s*\n", doc):
        if ">>>" in para or "::" in para:
            continue
        words = para.split()
        if len(words) >= MIN_WORDS and words[-1][-1] in ".?!" and all(WORD.fullmatch(w) for w in words):
            out.append(" ".join(words))
    return out


def docstrings(source: bytes) -> list[str]:
    """The docstrings of a module and of its classes and functions, in tree order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [d for node in ast.walk(tree) if isinstance(node, kinds) and (d := ast.get_docstring(node))]


def build(root: Path, max_bytes: int = MAX_BYTES) -> tuple[str, int]:
    """(text, number of paragraphs) from the standard library at ``root``."""
    seen, lines, total = set(), [], 0
    for path in stdlib.stdlib_files(root):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if len(raw) > stdlib.MAX_FILE_BYTES:
            continue
        for doc in docstrings(raw):
            for para in prose(doc):
                if para in seen:
                    continue
                n = len(para.encode()) + 1
                if total + n > max_bytes:
                    return "".join(lines), len(lines)
                seen.add(para)
                lines.append(para + "\n")
                total += n
    return "".join(lines), len(lines)


def get(max_bytes: int = MAX_BYTES, notice=None, root=None) -> str:
    """The cached docstrings corpus, building it on first use."""
    root = stdlib.stdlib_root(root)
    return stdlib.cached("docstrings", FORMAT, max_bytes, root, build, notice=notice,
                         empty=f"no prose docstrings under {root} (max_bytes={max_bytes}): "
                               "train on your own text instead",
                         describe=lambda n, text: f"{n} paragraphs, {len(text) / 1e3:.0f}K characters")
