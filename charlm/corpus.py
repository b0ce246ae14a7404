"""Corpus -> compact id arrays -> train/val split -> (T, B) windows for truncated BPTT.

Reading text (files, directories, stdin, named corpora) lives in ``charlm.sources`` (decoding in
``charlm.textstream``); ``read_sources`` and ``Corpus`` are re-exported here.

Encoded corpora use the smallest unsigned dtype for the vocabulary (uint8 / uint16 /
uint32). ``encode_to_file`` streams the sources twice (count, then encode) and writes a
``.npy`` file chunk by chunk, then returns it memory-mapped, so a corpus of any size
needs only a few chunks of memory.

Batching (``Streams``): the ids are cut into B contiguous streams of ``stream_len``
characters; window k of an epoch holds characters ``[k*T, (k+1)*T)`` of every stream
(plus that stream's offset), so window k+1 continues window k with no gap and no
overlap and the hidden state can be carried across. Targets are the inputs shifted by
one within the stream. Everything is a function of (seed, epoch, k).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import UnknownSymbolsError, UsageError
from .sources import Corpus, expand_sources, iter_text, read_sources
from .textstream import spool_stdin
from .tokenizer import CharTokenizer, add_counts, count_symbols, select_symbols, symbol_repr

__all__ = ["Corpus", "read_sources", "ids_dtype", "encode_corpus", "count_sources", "encode_to_file",
           "load_ids", "rereadable", "load_saved_ids", "split_ids", "Streams", "fit_shape",
           "vocab_stats"]

ENCODE_CHARS = 1 << 22  # characters encoded per step in memory


def ids_dtype(vocab_size: int) -> np.dtype:
    """Smallest unsigned dtype that holds every id of a vocabulary."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def encode_corpus(text: str, tokenizer: CharTokenizer, *, unknown: str | None = None) -> np.ndarray:
    """Ids of ``text`` (a str or a ``Corpus``) in the compact dtype (N,), encoded in slices."""
    text = text if isinstance(text, str) else getattr(text, "text", text)
    if not isinstance(text, str):
        raise UsageError(f"encode_corpus needs a str, got {type(text).__name__}")
    if tokenizer.normalize:
        text = unicodedata.normalize("NFC", text)
    dtype = ids_dtype(len(tokenizer))
    parts = [tokenizer.encode_normalized(text[i:i + ENCODE_CHARS], unknown=unknown).astype(dtype)
             for i in range(0, len(text), ENCODE_CHARS)]
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype)
    if ids.size == 0:
        head = "the corpus encodes to no ids at all (every character is unknown): use "
        raise UsageError(head + 'unknown="replace", or a tokenizer built from this text',
                         cli=head + "--unknown replace, or a tokenizer built from this text")
    return ids


class ReadSpec(NamedTuple):
    """How the sources are read (the options of ``charlm.sources.iter_text``)."""

    encoding: str = "utf-8"
    errors: str = "strict"          # strict | replace
    glob: str = "**/*"              # file pattern inside directories
    stdin: object = None            # a binary stream standing in for '-' (default: sys.stdin)
    notice: object = None           # callable for notices (binary files skipped, ...)
    max_bytes: int | None = None    # bound of a stream (stdin, FIFO, device); None = STREAM_LIMIT


class VocabSpec(NamedTuple):
    """How a vocabulary is built from the corpus (``CharTokenizer.from_counts``)."""

    level: str = "char"             # char | byte
    normalize: str | None = None    # None | NFC
    min_count: int = 1
    max_vocab: int | None = None
    unknown: str = "error"          # beyond max_vocab: error | replace | skip


def _read_opts(encoding, errors, glob, stdin, notice, max_bytes=None):
    return ReadSpec(encoding, errors, glob, stdin, notice, max_bytes)._asdict()


def count_sources(sources, *, level: str = "char", normalize: str | None = None, encoding: str = "utf-8",
                  errors: str = "strict", glob: str = "**/*", stdin=None, notice=None,
                  _expanded=None, max_bytes: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Dense symbol counts (S,) of a streamed corpus, and the labels of the sources read."""
    names: list[str] = []
    counts = None
    for chunk in iter_text(sources, nfc_safe=bool(normalize), names=names, _expanded=_expanded,
                           **_read_opts(encoding, errors, glob, stdin, notice, max_bytes)):
        if normalize:
            chunk = unicodedata.normalize("NFC", chunk)
        counts = add_counts(counts, count_symbols(chunk, level))
    return counts, names


def _npy_header(dtype: np.dtype, n: int) -> bytes:
    """A version 1.0 .npy header padded to 128 bytes, so it can be rewritten in place."""
    d = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': ({n},), }}"
    head = np.lib.format.magic(1, 0) + (128 - 10).to_bytes(2, "little")
    return head + (d + " " * (128 - 10 - len(d) - 1) + "\n").encode("latin1")


def encode_to_file(sources, path, *, tokenizer: CharTokenizer | None = None, vocab: VocabSpec = VocabSpec(),
                   read: ReadSpec = ReadSpec(), names: list | None = None,
                   starts: list | None = None) -> tuple[np.ndarray, CharTokenizer]:
    """Encode sources into a ``.npy`` file at ``path``; return (read-only memmap (N,), tokenizer).

    Builds the tokenizer (``vocab``) in a first streamed pass unless one is given (stdin is spooled
    to a temporary file so it can be read twice). Peak memory is a few chunks, whatever
    the corpus size. ``names``, if given, receives the label of each source read, and ``starts``
    the id offset where each source begins (exact; with ``normalize`` a source's last partial line
    may count toward the next one).
    """
    opts = read._asdict()
    if starts is not None and names is None:
        names = []
    expanded = expand_sources(sources, glob=read.glob, encoding=read.encoding, stdin=read.stdin,
                              notice=read.notice, max_bytes=read.max_bytes)
    temps = spool_stdin(expanded, read.encoding) if tokenizer is None else []
    built, names = tokenizer is None, [] if names is None else names
    try:
        if tokenizer is None:
            counts, _ = count_sources(None, level=vocab.level, normalize=vocab.normalize, _expanded=expanded, **opts)
            tokenizer = CharTokenizer.from_counts(counts, **vocab._asdict())
        dtype = ids_dtype(len(tokenizer))
        path = Path(path)
        try:
            _write_ids(path, dtype, iter_text(None, nfc_safe=bool(tokenizer.normalize), _expanded=expanded,
                                              names=names, **opts), tokenizer, names, starts)
        except UnknownSymbolsError as e:
            if not built:
                raise
            detail = str(e).split(". Fix:")[0]   # the vocabulary was just built from these very files
            raise UsageError(f"{names[-1] if names else 'the corpus'} changed while the corpus was being read "
                             f"({detail}, unseen when the vocabulary was built a moment before); run again "
                             "once the files stay put") from None
    finally:
        for t in temps:
            t.close()
    return np.load(path, mmap_mode="r", allow_pickle=False), tokenizer


def _write_ids(path: Path, dtype, chunks, tokenizer: CharTokenizer, names=None, starts=None) -> None:
    """Encode ``chunks`` into ``path`` through a temporary file that never outlives a failure.

    The temporary name follows ``charlm.rundir.TEMP_RE`` (a run's lock holder removes leftovers of a
    killed writer); it is created exclusively, so it is never a symbolic link planted in advance.
    """
    import secrets

    from .rundir import open_nofollow

    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory; remove it (charlm writes the encoded corpus there)")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with os.fdopen(open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as f:
            f.write(_npy_header(dtype, 0))
            n = 0
            for chunk in chunks:
                if starts is not None:  # a new source began with this chunk: it starts at id n
                    starts.extend([n] * (len(names) - len(starts)))
                if tokenizer.normalize:
                    chunk = unicodedata.normalize("NFC", chunk)
                ids = tokenizer.encode_normalized(chunk).astype(dtype)
                f.write(memoryview(ids))
                n += ids.size
            f.seek(0)
            f.write(_npy_header(dtype, n))
        if n == 0:
            raise UsageError("the corpus encodes to no ids at all (every character is unknown)")
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def load_ids(sources, *, out=None, tokenizer: CharTokenizer | None = None, vocab: VocabSpec = VocabSpec(),
             read: ReadSpec = ReadSpec(), starts: list | None = None) -> tuple[np.ndarray, CharTokenizer, list[str]]:
    """(ids (N,), tokenizer, source labels): in memory, or memory-mapped at ``out`` if given.
    ``starts`` (with ``out``) receives the id offset where each source begins."""
    if out is not None:
        names: list[str] = []
        ids, tok = encode_to_file(sources, out, tokenizer=tokenizer, vocab=vocab, read=read, names=names,
                                  starts=starts)
        return ids, tok, names
    corpus = read_sources(sources, **read._asdict())
    tok = tokenizer or CharTokenizer.from_text(corpus.text, **vocab._asdict())
    return encode_corpus(corpus.text, tok), tok, corpus.names


def fingerprint(ids: np.ndarray) -> str:
    """The corpus fingerprint a checkpoint records: ``sha256:`` + 32 hex digits of the ids' bytes."""
    import hashlib

    return "sha256:" + hashlib.sha256(np.ascontiguousarray(ids).tobytes()).hexdigest()[:32]


def rereadable(sources) -> bool:
    """Whether every source can be read again later: no stdin, no FIFO / pipe / device."""
    for s in sources:
        s = os.fspath(s)
        if s == "-" or (os.path.exists(s) and not os.path.isfile(s) and not os.path.isdir(s)):
            return False
    return True


def load_saved_ids(path, tokenizer: CharTokenizer) -> np.ndarray:
    """A run's ``ids.npy`` memory-mapped, checked against its tokenizer; ``UsageError`` naming the file."""
    path = os.fspath(path)
    fix = "the run's encoded text is lost: start a new run with --out and give the text again"
    if not os.path.lexists(path):
        raise UsageError(f"{path} is missing and the run was trained on a stream (stdin or a pipe) that cannot be "
                         f"read again; {fix}")
    if not os.path.isfile(path):
        raise UsageError(f"{path} is not a regular file (a directory?); {fix}")
    try:
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"{path} is not a readable .npy file ({str(e)[:80]}); {fix}") from None
    if ids.ndim != 1 or ids.dtype.kind != "u" or ids.size < 2:
        raise UsageError(f"{path} holds {ids.dtype} {ids.shape}, not encoded text; {fix}")
    if int(ids.max()) >= len(tokenizer):
        raise UsageError(f"{path} holds ids up to {int(ids.max())}, beyond the tokenizer's {len(tokenizer)} "
                         f"symbols; {fix}")
    return ids


VAL_SPLITS = ("tail", "each")


def split_ids(ids: np.ndarray, val_frac: float = 0.1, test_frac: float = 0.0, *, starts=None):
    """(train, val, test): train first, then validation, then test at the end.

    Without ``starts`` (``--val-split tail``, the default) the three are contiguous views of the
    concatenated corpus, so with several sources validation comes from the last one(s). ``starts``
    (``--val-split each``): the id offsets where each source begins (``[0, ...]``, from ``load_ids``);
    every source is split on its own in the same proportions and the parts are concatenated
    (copies), so each source gives its own tail to validation and test.
    """
    if not (0.0 <= val_frac < 1.0 and 0.0 <= test_frac < 1.0 and val_frac + test_frac < 1.0):
        raise UsageError("--val-frac and --test-frac must be in [0, 1) and sum to less than 1")
    if starts is not None and len(starts) > 1:
        ends = list(starts[1:]) + [len(ids)]
        parts = [_split_one(ids[a:b], val_frac, test_frac) for a, b in zip(starts, ends, strict=True) if b > a]
        train, val, test = (np.concatenate([p[i] for p in parts]) for i in range(3))
        if len(train) < 2:
            raise UsageError(f"the corpus has {len(ids)} characters: too few to keep a training split; "
                             "lower --val-frac or give more text")
        return train, val, test
    return _split_one(ids, val_frac, test_frac, check=True)


def _split_one(ids, val_frac, test_frac, check=False):
    n = len(ids)
    n_val, n_test = int(n * val_frac), int(n * test_frac)
    n_train = n - n_val - n_test
    if check and n_train < 2:
        raise UsageError(f"the corpus has {n} characters: too few to keep a training split; "
                         "lower --val-frac or give more text")
    return ids[:n_train], ids[n_train:n_train + n_val], ids[n_train + n_val:]


def fit_shape(n: int, batch_size: int, seq_len: int) -> tuple[int, int]:
    """Shrink (B, T) to fit ``n`` characters: halve B down to 1, then cut T to what is left.

    Returns the inputs unchanged when they fit (``n >= B*T + 1``).
    """
    if n < 2:
        raise UsageError(f"the corpus has {n} character(s): at least 2 are needed to predict anything")
    b, t = max(1, int(batch_size)), max(1, int(seq_len))
    while b > 1 and b * t + 1 > n:
        b //= 2
    if b * t + 1 > n:
        t = (n - 1) // b
    return b, t


class Streams:
    """B contiguous parallel streams over ``data`` (N,), served as (T, B) windows.

    ``stream_len = (N - 1) // B``; stream b starts at ``b * stream_len + offset_b``.
    ``windows_per_epoch = stream_len // T`` (with ``shuffle_offsets``,
    ``(stream_len - T + 1) // T`` but at least 1, so the offsets can span a whole window).
    Offsets are 0, or with ``shuffle_offsets`` drawn per stream and epoch from
    ``np.random.default_rng((seed, epoch))`` in ``[0, stream_len - windows*T]``.
    Needs ``N >= B*T + 1``.
    """

    def __init__(self, data: np.ndarray, batch_size: int, seq_len: int, *, seed: int = 0,
                 shuffle_offsets: bool = False):
        if np.ndim(data) != 1:
            raise UsageError("Streams needs a 1-D array of ids")
        if batch_size < 1 or seq_len < 1:
            raise UsageError("--batch-size and --seq-len must be >= 1")
        if seed < 0:
            raise UsageError("--seed must be >= 0")
        n, b, t = len(data), int(batch_size), int(seq_len)
        if n < b * t + 1:
            raise UsageError(f"the text has {n} characters, too few for one window of --batch-size {b} "
                             f"x --seq-len {t}: it needs at least {b * t + 1}. Use a smaller --batch-size "
                             "or --seq-len, or more text")
        self.data = data  # (N,)
        self.batch_size, self.seq_len, self.seed = b, t, int(seed)
        self.shuffle_offsets = bool(shuffle_offsets)
        self.stream_len = (n - 1) // b
        w = self.stream_len // t
        if shuffle_offsets:
            w = max(1, (self.stream_len - t + 1) // t)
        self.windows_per_epoch = w
        self.slack = self.stream_len - w * t
        self._base = np.arange(b, dtype=np.int64) * self.stream_len  # (B,)
        self._steps = np.arange(t, dtype=np.int64)[:, None]  # (T, 1)
        self._cached = (None, self._base)

    def __len__(self) -> int:
        return self.windows_per_epoch

    @property
    def tokens_per_epoch(self) -> int:
        return self.windows_per_epoch * self.seq_len * self.batch_size

    def offsets(self, epoch: int) -> np.ndarray:
        """Index of each stream's first input character in this epoch: int64 (B,)."""
        if not self.shuffle_offsets or self.slack == 0:
            return self._base
        if self._cached[0] != epoch:
            rng = np.random.default_rng((self.seed, int(epoch)))
            self._cached = (epoch, self._base + rng.integers(0, self.slack + 1, size=self.batch_size))
        return self._cached[1]

    def window(self, epoch: int, k: int, out: tuple[np.ndarray, np.ndarray] | None = None):
        """(x, y) for window ``k`` of ``epoch``: int32 (T, B) each, C-contiguous; y[t] = x[t+1]'s
        character, i.e. the next character of the same stream."""
        if not 0 <= k < self.windows_per_epoch:
            raise IndexError(f"window {k} out of range: an epoch has {self.windows_per_epoch} windows")
        idx = self.offsets(epoch)[None, :] + (k * self.seq_len) + self._steps  # (T, B)
        x, y = out if out is not None else (np.empty(idx.shape, np.int32), np.empty(idx.shape, np.int32))
        x[...] = self.data[idx]
        y[...] = self.data[idx + 1]
        return x, y


def vocab_stats(counts: np.ndarray, *, level: str = "char", top: int = 10,
                vocab_cap: int | None = None) -> dict:
    """Corpus statistics from dense counts (``count_sources``): a JSON-ready dict."""
    present = np.flatnonzero(counts)
    total = int(counts.sum())
    order = present[np.lexsort((present, -counts[present]))]  # most frequent first
    conv = int if level == "byte" else chr

    def rows(values):
        return [{"symbol": conv(int(v)), "repr": symbol_repr(conv(int(v))), "count": int(counts[v]),
                 "fraction": int(counts[v]) / total} for v in values]

    least = present[np.lexsort((present, counts[present]))][:top]  # rarest first
    stats = {"level": level, "symbols": total, "vocab_size": int(present.size),
             "most_common": rows(order[:top]), "least_common": rows(least)}
    if vocab_cap is not None:
        if vocab_cap < 1:
            raise UsageError("--vocab-cap must be >= 1")
        kept = select_symbols(counts, 1, vocab_cap)
        unknown = total - int(counts[kept].sum())
        stats["vocab_cap"] = {"cap": int(vocab_cap), "kept_symbols": int(kept.size),
                              "dropped_symbols": int(present.size - kept.size),
                              "unknown_symbols": unknown, "unknown_fraction": unknown / total}
    return stats
