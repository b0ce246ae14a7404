"""Bounded reads of user-named files: no input hangs or eats memory.

A FIFO is opened without blocking and given ``FIFO_WAIT`` seconds to get a writer; a stream is read
through ``bounded`` up to a limit; ``read_bytes`` reads a text that is held in memory (``eval --file``,
``score``, ``--prime-file``, a tokenizer) up to ``TEXT_LIMIT`` or its caller's limit, checking a
regular file's size before reading anything. ``parse_size``/``fmt_bytes`` spell the limits
(``--max-bytes``). Corpora are read by ``charlm.sources`` and ``charlm.textstream``, on top of this module.
"""

from __future__ import annotations

import os
import re
import select
import stat
import sys

from .errors import UsageError

CHUNK_BYTES = 1 << 22  # bytes read per step (4 MiB)
TEXT_LIMIT = 100 << 20  # default bound of a text read into memory (eval --file, score, --prime-file)
FIFO_WAIT = 10.0        # seconds to wait for a FIFO's writer before giving up
RAISE_LIMIT = "pass --max-bytes SIZE to raise it, or give a regular file"


def stdin_buffer():
    """The binary stdin; ``UsageError`` when the process was started with stdin closed."""
    stream = sys.stdin
    if stream is None or getattr(stream, "closed", False):
        raise UsageError("stdin is closed: pipe text in, e.g. `cat book.txt | charlm train -`, "
                         "or pass a file instead of '-'")
    return getattr(stream, "buffer", stream)


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def parse_size(text) -> int:
    """'100M', '2G', '512k', '1000' (bytes) -> bytes; ``UsageError`` for anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--max-bytes {text!r} is not a size: use e.g. 500M, 2G or 1000000")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def bounded(read, limit: int, label: str, fix: str = RAISE_LIMIT):
    """``read`` that raises ``UsageError`` once more than ``limit`` bytes came through."""
    total = 0

    def read_at_most(n: int = -1) -> bytes:
        nonlocal total
        block = read(CHUNK_BYTES if n is None or n < 0 else n)
        total += len(block)
        if total > limit:
            raise UsageError(f"{label} holds more than {fmt_bytes(limit)} (the limit for a stream or a text held "
                             f"in memory): {fix}")
        return block

    return read_at_most


def open_binary(path, label: str | None = None):
    """A binary file object for a user-named path; a FIFO is opened without blocking and waited on
    for ``FIFO_WAIT`` seconds at most (a FIFO that nobody writes to never hangs charlm)."""
    label = label or os.fspath(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{label} is a directory: pass a file")
        if not stat.S_ISFIFO(st.st_mode):
            return open(path, "rb")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise UsageError(f"cannot read {label}: {e.strerror}; check the path and its permissions") from None
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    if not poller.poll(int(FIFO_WAIT * 1000)):
        os.close(fd)
        raise UsageError(f"{label} is a FIFO and nothing was written to it in {FIFO_WAIT:g}s: start its writer "
                         "first, or pass a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path, *, limit: int | None = None, what: str = "", fix: str = RAISE_LIMIT) -> bytes:
    """All bytes of a user-named file ('-' = stdin), refusing more than ``limit`` (default ``TEXT_LIMIT``).

    A regular file is checked by its size before anything is read; stdin, FIFOs and devices are read
    in chunks up to the limit, so /dev/zero or an endless pipe ends in an error, not in a MemoryError.
    """
    limit = limit or TEXT_LIMIT
    label = f"{what} {os.fspath(path)}".strip() if path != "-" else f"{what} <stdin>".strip()
    f = stdin_buffer() if path == "-" else open_binary(path, label)
    try:
        if path != "-":
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size > limit:
                raise UsageError(f"{label} is {st.st_size:,} bytes, over the limit of {fmt_bytes(limit)} for a "
                                 f"text held in memory: {fix}")
        read = bounded(f.read, limit, label, fix)
        parts = []
        while block := read(CHUNK_BYTES):
            parts.append(block)
        return b"".join(parts)
    except OSError as e:
        raise UsageError(f"cannot read {label}: {e.strerror}") from None
    finally:
        if path != "-":
            f.close()


STREAM_FIX = "give a regular file"


def read_file_bytes(path, *, what: str = "") -> bytes:
    """All bytes of a user-named data file that charlm holds in memory whatever its size (the training
    data of ``classify``/``tag``/``seq2seq``): a regular file whole, as big as it is; a FIFO, pipe or
    device up to ``TEXT_LIMIT`` (so /dev/zero or a FIFO without a writer never hangs)."""
    try:
        st = os.stat(path)
        size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    except OSError:
        size = 0   # read_bytes names the problem
    return read_bytes(path, limit=max(TEXT_LIMIT, size + 1), what=what, fix=STREAM_FIX)


def stdin_lines(limit: int | None = None):
    """The lines of stdin (line ends stripped), one at a time, each at most ``limit`` characters
    (default ``TEXT_LIMIT``): an endless line (``< /dev/zero``) ends in ``UsageError``, not in memory
    exhaustion. ``UsageError`` too when stdin is closed."""
    stream = sys.stdin
    if stream is None or getattr(stream, "closed", False):
        raise UsageError("stdin is closed: pass TEXT, or pipe one text per line")
    limit = limit or TEXT_LIMIT
    n = 0
    while line := stream.readline(limit + 1):
        n += 1
        if len(line) > limit and not line.endswith("\n"):
            raise UsageError(f"stdin line {n} is longer than {limit:,} characters: pipe one text per line")
        yield line.rstrip("\r\n")
