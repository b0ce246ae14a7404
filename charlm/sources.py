"""Reading corpus text from files, directories, stdin (``-``) and named corpora.

A source is tried in this order: ``-`` (stdin), an existing path, then a named corpus
from ``charlm.corpora`` (``charlm vocab stdlib``; parameters as ``copy:size=20000,seed=3``).
Sources are concatenated as they are, with no separator. Directories are walked
recursively, files read in sorted order of their relative paths; hidden files and
directories are skipped, and so are files that look binary (a NUL byte in their first
8 KiB), with one notice per directory.

``expand_sources`` resolves the source strings into ``_Source`` records (a file, a stream,
stdin, a named corpus); ``iter_text`` streams their text in chunks, decoded by
``charlm.textstream`` (strict UTF-8 by default, binary sniffing, NFC-safe cuts, spooling of
streams read twice), so a large corpus is never held twice in memory; ``read_sources`` joins
the chunks into one string.

Bounds (issue "no input hangs or eats memory"): stdin and non-regular files (FIFOs, ``<(cmd)``
pipes, devices such as /dev/zero) are read up to ``max_bytes`` (``--max-bytes``, default
``STREAM_LIMIT``, kept in each source's ``limit``), and spooled to a temporary file when the
corpus is read twice. Opening and bounding a user-named file (FIFOs, size limits, texts held in
memory) is ``charlm.boundedread``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .boundedread import stdin_buffer
from .errors import UsageError
from .textstream import SNIFF_BYTES, ascii_compatible, check_codec, nfc_safe_chunks, source_chunks

STREAM_LIMIT = 1 << 30  # default bound of a corpus read from a stream (stdin, a FIFO, a device): 1 GiB
Notice = Callable[[str], None] | None


@dataclass
class Corpus:
    """Text of one or more sources; ``names`` labels each file / named corpus read, in order."""

    text: str
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.text)


@dataclass
class _Source:
    kind: str                 # "file" | "stream" (a FIFO, a pipe, a device) | "stdin" | "named"
    label: str                # shown in messages and Corpus.names
    path: Path | None = None
    stream: object = None     # binary stream for stdin (or a spooled stream)
    text: str | None = None   # named corpora, loaded once
    limit: int = STREAM_LIMIT  # most bytes read from stdin or a stream


def glob_regex(pattern: str) -> re.Pattern:
    """``--glob`` as a regex over '/'-separated paths relative to a directory.

    ``**/`` matches any number of directories; a pattern without '/' matches the file
    name at any depth (``*.py`` finds every Python file).
    """
    if "/" not in pattern:
        pattern = "**/" + pattern
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            j = pattern.index("]", i + 2)
            body = pattern[i + 1:j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as e:
        raise UsageError(f"bad --glob {pattern.removeprefix('**/')!r} ({e}): use *, ?, ** and [abc] or [a-z] "
                         "with the range in order") from None


def _shown(paths: list, root: Path) -> str:
    return ", ".join(str(p.relative_to(root)) for p in paths[:5]) + (", ..." if len(paths) > 5 else "")


def _walk(root: Path, glob: str, notice: Notice, nul_check: bool) -> list[_Source]:
    """The text files under ``root``. A file or directory that disappears while the tree is listed is
    skipped with a notice (it is no longer there to read); one that cannot be read is an error."""
    rx = glob_regex(glob)
    found, hidden, binary, gone = [], 0, [], []

    def unlisted(e: OSError):
        if isinstance(e, FileNotFoundError) and e.filename is not None and Path(e.filename) != root:
            gone.append(Path(e.filename))
            return
        where = e.filename if e.filename is not None else root
        raise UsageError(f"cannot list directory {where}: {e.strerror or e}; fix its permissions or "
                         "pass the readable parts of the tree")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlisted):
        hidden += sum(d.startswith(".") for d in dirnames)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                hidden += 1
                continue
            path = Path(dirpath, name)
            if not rx.match(path.relative_to(root).as_posix()):
                continue
            if not path.is_file():
                if not os.path.lexists(path):
                    gone.append(path)
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(SNIFF_BYTES)
            except FileNotFoundError:
                gone.append(path)
                continue
            except OSError as e:
                raise UsageError(f"cannot read {path}: {e.strerror}; fix its permissions or exclude it "
                                 "with --glob") from None
            if not head:
                continue  # empty files in a directory add nothing
            if nul_check and b"\x00" in head:
                binary.append(path)
                continue
            found.append((path.relative_to(root).as_posix(), _Source("file", str(path), path)))
    if notice and (hidden or binary):
        notice(f"{root}: skipped {hidden} hidden entries and {len(binary)} binary-looking files"
               + (f" ({_shown(binary, root)})" if binary else ""))
    if notice and gone:
        notice(f"{root}: skipped {len(gone)} entries that disappeared while the directory was read "
               f"({_shown(gone, root)})")
    if not found:
        raise UsageError(f"directory {root} has no text files matching --glob {glob!r} "
                         f"(skipped {hidden} hidden, {len(binary)} binary-looking, empty files ignored): "
                         "point at text files or change --glob")
    return [src for _, src in sorted(found, key=lambda item: item[0])]


def expand_sources(sources, *, glob: str = "**/*", encoding: str = "utf-8", stdin=None,
                   notice: Notice = None, max_bytes: int | None = None) -> list[_Source]:
    """Resolve source strings into files / streams / stdin / named corpora (errors for missing ones).

    ``max_bytes`` bounds what is read from stdin and from non-regular files (FIFOs, pipes such as
    ``<(cmd)``, devices such as /dev/zero); default ``STREAM_LIMIT``. Regular files are streamed from
    disk whatever their size.
    """
    from . import corpora

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise UsageError("no corpus given: pass text files, directories, - for stdin, or a named corpus ("
                         + ", ".join(corpora.names()) + ")")
    nul_check = ascii_compatible(encoding)
    out = []
    for src in sources:
        s = os.fspath(src)
        path = Path(s)
        if s == "-":
            out.append(_Source("stdin", "<stdin>", stream=stdin if stdin is not None else stdin_buffer(),
                               limit=max_bytes or STREAM_LIMIT))
        elif path.is_dir():
            out.extend(_walk(path, glob, notice, nul_check))
        elif path.exists():
            out.append(_Source("file" if path.is_file() else "stream", s, path, limit=max_bytes or STREAM_LIMIT))
        elif corpora.is_named(s):
            out.append(_Source("named", f"corpus:{s}"))
        else:
            raise UsageError(f"no such file, directory or named corpus: {s!r}. Named corpora: "
                             + ", ".join(corpora.names()))
    return out


def iter_text(sources, *, encoding: str = "utf-8", errors: str = "strict", glob: str = "**/*",
              stdin=None, notice: Notice = None, nfc_safe: bool = False, names: list | None = None,
              _expanded: list | None = None, max_bytes: int | None = None) -> Iterator[str]:
    """Stream the corpus as text chunks; appends each source's label to ``names`` if given.

    Raises UsageError at the end if the whole corpus is whitespace. ``nfc_safe`` cuts
    chunks only where NFC normalization of the pieces equals that of the whole.
    """
    check_codec(encoding, errors)
    expanded = _expanded if _expanded is not None else expand_sources(
        sources, glob=glob, encoding=encoding, stdin=stdin, notice=notice, max_bytes=max_bytes)
    nul_check = ascii_compatible(encoding)

    def chunks():
        for src in expanded:
            if names is not None:
                names.append(src.label)
            yield from source_chunks(src, encoding, errors, nul_check, notice)

    seen_text = False
    for chunk in (nfc_safe_chunks(chunks()) if nfc_safe else chunks()):
        seen_text = seen_text or not chunk.isspace()
        yield chunk
    if not seen_text:
        raise UsageError("the corpus contains only whitespace: give it some text")


def read_sources(sources, *, encoding: str = "utf-8", errors: str = "strict", glob: str = "**/*",
                 stdin=None, notice: Notice = None, max_bytes: int | None = None) -> Corpus:
    """Read every source into one string (see the module docstring for the rules)."""
    names: list[str] = []
    text = "".join(iter_text(sources, encoding=encoding, errors=errors, glob=glob, stdin=stdin,
                             notice=notice, names=names, max_bytes=max_bytes))
    return Corpus(text, names)
