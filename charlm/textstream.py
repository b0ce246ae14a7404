"""Decoding the bytes of one corpus source into text chunks (``charlm.sources`` finds the sources).

Decoding is strict UTF-8 by default: invalid bytes raise ``UsageError`` naming the source and the
byte offset; ``--encoding`` picks another codec (checked first: ``check_codec``), ``--errors
replace`` substitutes U+FFFD. A NUL byte (a NUL character for codecs that are not ASCII-compatible,
such as UTF-16) means the source is binary: ``UsageError``. Text is streamed in chunks of
``CHUNK_BYTES`` (``source_chunks``) so a large corpus is never held twice in memory;
``nfc_safe_chunks`` re-cuts the chunks where NFC normalization of the pieces equals that of the whole.

Stdin and non-regular files (FIFOs, ``<(cmd)`` pipes, devices) are read up to their source's
``limit`` bytes, and ``spool_stdin`` copies them to temporary files when the corpus is read twice
(count, then encode), each pass rewinding to the start (``_Rewind``).
"""

from __future__ import annotations

import codecs
import os
import tempfile
from collections.abc import Iterator

from .boundedread import CHUNK_BYTES, bounded, open_binary
from .errors import UsageError

SNIFF_BYTES = 8192  # bytes of a file read to tell text from binary


def ascii_compatible(encoding: str) -> bool:
    """True when the codec encodes ASCII as ASCII: then a NUL byte means binary (else a NUL character)."""
    try:
        return "\x00a".encode(encoding) == b"\x00a"
    except (UnicodeError, LookupError):
        return False


def check_codec(encoding: str, errors: str) -> None:
    """UsageError for an unknown or non-text ``--encoding`` or an unknown ``--errors`` handler."""
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


def source_chunks(src, encoding: str, errors: str, nul_check: bool, notice=None):
    """Yield the decoded text of one expanded source (``charlm.sources._Source``) in chunks."""
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


def nfc_safe_chunks(chunks: Iterator[str]) -> Iterator[str]:
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


def _sniff_binary(block: bytes, label: str, encoding: str) -> None:
    """The NUL test of ``_decode_stream`` on a first block, before a stream is spooled to disk."""
    if ascii_compatible(encoding):
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


def spool_stdin(expanded: list, encoding: str = "utf-8") -> list:
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
