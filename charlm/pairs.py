"""Sequence-to-sequence data: PAIRS files, character vocabularies with reserved ids, length buckets.

PAIRS is one of
    TSV    one pair per line, ``source<TAB>target`` (exactly one tab); a UTF-8 BOM and CRLF line ends are
           accepted; blank lines are skipped.
    JSONL  one JSON object per line, ``{"source": "...", "target": "..."}`` (chosen when the file name ends
           in .jsonl/.json or its first non-blank line starts with ``{``); blank lines are skipped.
    a built-in task name with optional parameters, ``dates:n=5000,seed=1`` (see charlm.corpora.pairs),
           used when no file of that name exists.
Bad input is a one-line UsageError naming the line: not UTF-8, no tab (or more than one), an empty source
or target, a target longer than ``max_target_len`` characters (no silent truncation), bad JSON.

Vocabularies (``PairVocab``): ids 0..3 are reserved in every vocabulary, then the characters in sorted order:
    PAD = 0   fills batches to one length; never a target of the loss
    BOS = 1   the decoder's first input
    EOS = 2   the decoder's last target: decoding ends when it is produced
    UNK = 3   --unknown replace at translate time (never seen in training)
One vocabulary for source and target with ``shared=True`` (``--shared-vocab``: needed to tie nothing, but
handy when both sides use the same alphabet), else two.

Batches (``buckets``): pairs are grouped by source length into buckets of ``width`` consecutive lengths
(lengths 1..w, w+1..2w, ...; width 1 = one exact length per bucket). Sources in a batch are padded with PAD
to the longest (``src_len`` holds each row's length: the encoder stops every row at its own length, see
charlm.encoder); targets are padded with PAD to the longest target plus EOS, and masked out of the loss.
Within a bucket the order is shuffled (by ``seed``) and cut into batches of at most ``batch_size``; the
batches are then shuffled together. See charlm.seq2seq_run for the measured choice of the default width.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
RESERVED = ("<pad>", "<bos>", "<eos>", "<unk>")


# ---------------------------------------------------------------- reading
def read_pairs(spec: str, *, max_target_len: int = 0, max_source_len: int = 0) -> list[tuple[str, str]]:
    """Pairs of a PAIRS file or a built-in task (see the module docstring); 0 = no length limit."""
    from charlm.corpora import pairs as tasks

    if not os.path.exists(spec) and tasks.is_task(spec):
        out = tasks.get(spec)
        _check_lengths(out, max_target_len, max_source_len, lambda i: f"pair {i + 1} of task {spec!r}")
        return out
    if not os.path.lexists(spec):
        raise UsageError(f"no such PAIRS file {spec!r}, and it is not a built-in task "
                         f"({', '.join(tasks.TASKS)})")
    from .boundedread import read_file_bytes

    raw = read_file_bytes(spec, what="PAIRS")   # bounded for FIFOs and devices; OS errors as one line
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UsageError(f"{spec} line {line}: not UTF-8 (byte {e.start}); convert the file to UTF-8") from None
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    first = next((ln for ln in lines if ln.strip()), "")
    jsonl = spec.lower().endswith((".jsonl", ".json")) or first.lstrip().startswith("{")
    out: list[tuple[str, str]] = []
    where = []
    for no, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        src, tgt = _parse_json(spec, no, line) if jsonl else _parse_tsv(spec, no, line)
        if not src:
            raise UsageError(f"{spec} line {no}: empty source; every pair needs a source and a target")
        if not tgt:
            raise UsageError(f"{spec} line {no}: empty target; every pair needs a source and a target")
        out.append((src, tgt))
        where.append(no)
    if not out:
        raise UsageError(f"{spec} holds no pairs: write one source<TAB>target per line")
    _check_lengths(out, max_target_len, max_source_len, lambda i: f"{spec} line {where[i]}")
    return out


def _parse_tsv(spec, no, line) -> tuple[str, str]:
    n = line.count("\t")
    if n == 0:
        raise UsageError(f"{spec} line {no}: no tab; write source<TAB>target (or JSONL "
                         '{"source": ..., "target": ...})')
    if n > 1:
        raise UsageError(f"{spec} line {no}: {n} tabs; write exactly one, source<TAB>target (or use JSONL)")
    src, tgt = line.split("\t")
    return src, tgt


def _parse_json(spec, no, line) -> tuple[str, str]:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise UsageError(f"{spec} line {no}: bad JSON ({e.msg}); write one "
                         '{"source": ..., "target": ...} object per line') from None
    if not isinstance(obj, dict) or not isinstance(obj.get("source"), str) or not isinstance(obj.get("target"), str):
        raise UsageError(f'{spec} line {no}: needs string fields "source" and "target"')
    return obj["source"], obj["target"]


def _check_lengths(pairs, max_target_len, max_source_len, where) -> None:
    for i, (src, tgt) in enumerate(pairs):
        if max_target_len and len(tgt) > max_target_len:
            raise UsageError(f"{where(i)}: the target has {len(tgt)} characters, more than --max-target-len "
                             f"{max_target_len}; raise --max-target-len or shorten the target")
        if max_source_len and len(src) > max_source_len:
            raise UsageError(f"{where(i)}: the source has {len(src)} characters, more than --max-source-len "
                             f"{max_source_len}; raise --max-source-len or shorten the source")


# ---------------------------------------------------------------- vocabularies
class PairVocab:
    """Characters <-> ids with PAD/BOS/EOS/UNK = 0/1/2/3 reserved (see the module docstring)."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.index = {ch: i + len(RESERVED) for i, ch in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(RESERVED) + len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, PairVocab) and self.chars == other.chars

    def unknown(self, text: str) -> list[str]:
        return sorted(set(text) - set(self.index))

    def encode(self, text: str, unknown: str = "error", where: str = "the text") -> np.ndarray:
        """Ids (n,) int32; unknown characters: error (UsageError), skip (dropped) or replace (UNK)."""
        if unknown not in ("error", "skip", "replace"):
            raise UsageError(f"unknown policy {unknown!r}: choose error, skip or replace")
        bad = self.unknown(text)
        if bad and unknown == "error":
            shown = ", ".join(map(repr, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise UsageError(f"{where} has characters the model never saw: {shown}. Fix: drop them, or pass "
                             "--unknown skip (drop) or --unknown replace (map to the unknown id)")
        ids = [self.index.get(ch, UNK) for ch in text if ch in self.index or unknown == "replace"]
        return np.array(ids, dtype=np.int32)

    def decode(self, ids) -> str:
        """Text of ids, stopping at the first EOS; PAD and BOS are dropped, UNK is U+FFFD."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i == UNK:
                out.append("\ufffd")
            elif i >= len(RESERVED):
                out.append(self.chars[i - len(RESERVED)])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"reserved": list(RESERVED), "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d: dict) -> PairVocab:
        if not isinstance(d, dict) or list(d.get("reserved", ())) != list(RESERVED) or not isinstance(
                d.get("chars"), str):
            raise UsageError("bad seq2seq vocabulary in the model file (the file is corrupt or foreign)")
        return cls(d["chars"])


def build_vocabs(pairs, shared: bool = False) -> tuple[PairVocab, PairVocab]:
    """(source vocabulary, target vocabulary); the same object twice when ``shared``."""
    src = set("".join(s for s, _ in pairs))
    tgt = set("".join(t for _, t in pairs))
    if shared:
        v = PairVocab(src | tgt)
        return v, v
    return PairVocab(src), PairVocab(tgt)


# ---------------------------------------------------------------- batches
@dataclass
class Batch:
    src: np.ndarray        # (S, B) int32 source ids, PAD after each row's length
    src_len: np.ndarray    # (B,) int32 source lengths (1..S)
    tgt_in: np.ndarray     # (T, B) int32 decoder inputs: BOS, y1 .. y_{n}, PAD...
    tgt_out: np.ndarray    # (T, B) int32 targets: y1 .. y_n, EOS, PAD...
    tgt_len: np.ndarray    # (B,) int32 targets per row, EOS included

    @property
    def size(self) -> int:
        return self.src.shape[1]


def make_batch(src_ids: list[np.ndarray], tgt_ids: list[np.ndarray]) -> Batch:
    """One batch from encoded sources (any lengths >= 1, padded with PAD) and targets (any lengths)."""
    if any(len(s) == 0 for s in src_ids):
        raise ValueError("every source needs at least one symbol")
    B = len(src_ids)
    S = max(len(s) for s in src_ids)
    T = max(len(t) for t in tgt_ids) + 1
    src = np.full((S, B), PAD, np.int32)
    tin = np.full((T, B), PAD, np.int32)
    tout = np.full((T, B), PAD, np.int32)
    for b, (s, t) in enumerate(zip(src_ids, tgt_ids, strict=True)):
        src[:len(s), b] = s
        tin[0, b] = BOS
        tin[1:len(t) + 1, b] = t
        tout[:len(t), b] = t
        tout[len(t), b] = EOS
    src_len = np.array([len(s) for s in src_ids], np.int32)
    lens = np.array([len(t) + 1 for t in tgt_ids], np.int32)
    return Batch(src, src_len, tin, tout, lens)


def encode_pairs(pairs, src_vocab: PairVocab, tgt_vocab: PairVocab, unknown: str = "error"):
    """(sources, targets) as lists of int32 id arrays."""
    srcs = [src_vocab.encode(s, unknown, f"source {i + 1}") for i, (s, _) in enumerate(pairs)]
    tgts = [tgt_vocab.encode(t, unknown, f"target {i + 1}") for i, (_, t) in enumerate(pairs)]
    return srcs, tgts


def buckets(srcs, tgts, batch_size: int, seed: int = 0, width: int = 1) -> list[Batch]:
    """Batches of at most ``batch_size`` pairs whose source lengths share a bucket of ``width`` lengths,
    in a shuffled order (module docstring)."""
    if width < 1:
        raise ValueError("width must be >= 1")
    rng = np.random.default_rng(seed)
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(srcs):
        by_len.setdefault((len(s) - 1) // width, []).append(i)
    out = []
    for key in sorted(by_len):
        idx = np.array(by_len[key])
        rng.shuffle(idx)
        for k in range(0, idx.size, batch_size):
            part = idx[k:k + batch_size]
            out.append(make_batch([srcs[i] for i in part], [tgts[i] for i in part]))
    order = rng.permutation(len(out))
    return [out[i] for i in order]
