"""Reading corpus text from files, directories, stdin (``-``) and named corpora.

A source is tried in this order: ``-`` (stdin), an existing path, then a named corpus
from ``charlm.corpora`` (``charlm vocab stdlib``; parameters as ``copy:size=20000,seed=3``).
Sources are concatenated as they are, with no separator. Directories are walked
recursively, files read in sorted order of their relative paths; hidden files and
directories are skipped, and so are files that look binary (a NUL byte in their first
8 KiB), with one notice per directory.

Decoding is strict UTF-8 by default: invalid bytes raise ``UsageError`` naming the file
and the byte offset. Text is streamed in chunks (``iter_text``) so a large corpus is
never held twice in memory; ``read_sources`` joins the chunks into one string.

Bounds (issue "no input hangs or eats memory"): stdin and non-regular files (FIFOs, ``<(cmd)``
pipes, devices such as /dev/zero) are read up to ``max_bytes`` (``--max-bytes``, default
``STREAM_LIMIT``), and spooled to a temporary file when the corpus is read twice. Opening and
bounding a user-named file (FIFOs, size limits, texts held in memory) is ``charlm.boundedread``.
"""

from __future__ import annotations

import codecs
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .boundedread import CHUNK_BYTES, bounded, open_binary, stdin_buffer
from .errors import UsageError

SNIFF_BYTES = 8192
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


def _ascii_compatible(encoding: str) -> bool:
    try:
        return "\x00a".encode(encoding) == b"\x00a"
    except (UnicodeError, LookupError):
        return False


def _check_codec(encoding: str, errors: str) -> None:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise UsageError(f"unknown --encoding {encoding!r}: use a Python codec name such as utf-8 or latin-1") \
            from None
    if not getattr(info, "_is_text_encoding", True):
        raise UsageError(f"--encoding {encoding} is not a text encoding (it maps bytes to bytes or str to str): "
                         "use one such as utf-8, utf-16 or latin-1")
    try:
        codecs.lookup_error(errors)
    except LookupError:
        raise UsageError(f"unknown --errors {errors!r}: use strict or replace") from None


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
    nul_check = _ascii_compatible(encoding)
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


def _decode_stream(read, label: str, encoding: str, errors: str, nul_check: bool, empty_msg: str):
    """Yield decoded chunks of a binary stream, with byte offsets in every error."""
    dec = codecs.getincrementaldecoder(encoding)(errors)
    fed = 0
    while True:
        block = read(CHUNK_BYTES)
        if not block and fed == 0:
            raise UsageError(empty_msg)
        if nul_check and (i := block.find(b"\x00")) >= 0:
            raise UsageError(f"{label} looks binary (NUL byte at byte offset {fed + i}): charlm reads text; "
                             "pass text files, or --encoding if it is UTF-16/32 text")
        try:
            pending = len(dec.getstate()[0])
        except Exception:  # a decoder without byte state
            pending = 0
        try:
            text = dec.decode(block, final=not block)
        except UnicodeDecodeError as e:
            off = fed - pending + e.start
            raise UsageError(f"{label}: invalid {encoding} at byte offset {off} ({e.reason}). Fix: pass the "
                             "file's real --encoding (e.g. --encoding latin-1), or --errors replace to "
                             "substitute U+FFFD for bad bytes") from None
        except UnicodeError as e:  # e.g. "UTF-16 stream does not start with BOM"
            raise UsageError(f"{label}: cannot decode as {encoding} ({e}); for UTF-16/32 without a byte-order "
                             "mark name the byte order, e.g. --encoding utf-16-le") from None
        fed += len(block)
        if not nul_check and "\x00" in text:
            raise UsageError(f"{label} looks binary (it decodes to NUL characters in {encoding}): charlm reads "
                             "text; check --encoding")
        if text:
            yield text
        if not block:
            return


def _source_chunks(src: _Source, encoding: str, errors: str, nul_check: bool, notice: Notice):
    if src.kind == "named":
        from . import corpora

        if src.text is None:
            src.text = corpora.get(src.label.removeprefix("corpus:"), notice=notice)
        step = CHUNK_BYTES
        for i in range(0, len(src.text), step):
            yield src.text[i:i + step]
    elif src.stream is not None:  # stdin, or a stream spooled to a temporary file
        empty = ("stdin is empty: pipe text in, e.g. `cat book.txt | charlm train -`" if src.kind == "stdin"
                 else f"{src.label} is empty: give a file with text in it")
        yield from _decode_stream(bounded(src.stream.read, src.limit, src.label), src.label, encoding, errors,
                                  nul_check, empty)
    else:
        try:
            f = open_binary(src.path, src.label)
        except UsageError:
            if not os.path.lexists(src.path):
                raise UsageError(f"{src.label} disappeared while the corpus was being read; run again once "
                                 "the files stay put") from None
            raise
        with f:
            read = _named_reads(f.read, src.label)
            read = read if src.kind == "file" else bounded(read, src.limit, src.label)
            yield from _decode_stream(read, src.label, encoding, errors, nul_check,
                                      f"{src.label} is empty: give a file with text in it")


def _named_reads(read, label: str):
    """``read`` whose OS errors (EIO, a file that became unreadable) name the file being read."""
    def named(n):
        try:
            return read(n)
        except OSError as e:
            raise UsageError(f"cannot read {label}: {e.strerror or e}; the file became unreadable while the "
                             "corpus was being read: check the disk, or leave the file out") from None
    return named


def _nfc_safe(chunks: Iterator[str]) -> Iterator[str]:
    """Re-cut chunks before a space or newline, where NFC never joins neighbours."""
    carry = ""
    for chunk in chunks:
        chunk = carry + chunk
        cut = max(chunk.rfind("\n"), chunk.rfind(" "))
        if cut <= 0:
            carry = chunk
            continue
        carry = chunk[cut:]
        yield chunk[:cut]
    if carry:
        yield carry


def iter_text(sources, *, encoding: str = "utf-8", errors: str = "strict", glob: str = "**/*",
              stdin=None, notice: Notice = None, nfc_safe: bool = False, names: list | None = None,
              _expanded: list | None = None, max_bytes: int | None = None) -> Iterator[str]:
    """Stream the corpus as text chunks; appends each source's label to ``names`` if given.

    Raises UsageError at the end if the whole corpus is whitespace. ``nfc_safe`` cuts
    chunks only where NFC normalization of the pieces equals that of the whole.
    """
    _check_codec(encoding, errors)
    expanded = _expanded if _expanded is not None else expand_sources(
        sources, glob=glob, encoding=encoding, stdin=stdin, notice=notice, max_bytes=max_bytes)
    nul_check = _ascii_compatible(encoding)

    def chunks():
        for src in expanded:
            if names is not None:
                names.append(src.label)
            yield from _source_chunks(src, encoding, errors, nul_check, notice)

    seen_text = False
    for chunk in (_nfc_safe(chunks()) if nfc_safe else chunks()):
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


def _sniff_binary(block: bytes, label: str, encoding: str) -> None:
    """The NUL test of ``_decode_stream`` on a first block, before a stream is spooled to disk."""
    if _ascii_compatible(encoding):
        if (i := block.find(b"\x00")) >= 0:
            raise UsageError(f"{label} looks binary (NUL byte at byte offset {i}): charlm reads text; "
                             "pass text files, or --encoding if it is UTF-16/32 text")
        return
    try:
        text = codecs.getincrementaldecoder(encoding)("ignore").decode(block[:SNIFF_BYTES])
    except (LookupError, UnicodeError):
        return
    if "\x00" in text:
        raise UsageError(f"{label} looks binary (it decodes to NUL characters in {encoding}): charlm reads "
                         "text; check --encoding")


def spool_stdin(expanded: list[_Source], encoding: str = "utf-8") -> list:
    """Copy stdin and other streams (FIFOs, ``<(cmd)`` pipes, devices) to temporary files, so the
    sources can be read twice (count, then encode); at most each source's ``limit`` bytes. Returns
    the temporary files (close them when done)."""
    temps = []
    try:
        for src in expanded:
            if src.kind not in ("stdin", "stream") or isinstance(src.stream, _Rewind):
                continue
            tmp = tempfile.TemporaryFile()
            temps.append(tmp)
            f = open_binary(src.path, src.label) if src.stream is None else None
            read = bounded((f or src.stream).read, src.limit, src.label)
            try:
                first = True
                while block := read(CHUNK_BYTES):
                    if first:
                        _sniff_binary(block, src.label, encoding)
                        first = False
                    tmp.write(block)
            finally:
                if f is not None:
                    f.close()
            tmp.seek(0)
            src.stream = _Rewind(tmp)
    except BaseException:
        for t in temps:
            t.close()
        raise
    return temps


class _Rewind:
    """A read() that starts from the beginning of the spooled file on every pass."""

    def __init__(self, f):
        self._f, self._pos_reset = f, True

    def read(self, n):
        if self._pos_reset:
            self._f.seek(0)
            self._pos_reset = False
        block = self._f.read(n)
        if not block:
            self._pos_reset = True
        return block
