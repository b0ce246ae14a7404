"""The held-out splits of a training run (``charlm eval RUN --split val|test``): exactly the ids the
training split off, from RUN_DIR/ids.npy or by reading the corpus again, refused when the corpus no
longer matches the fingerprint of the run's checkpoint."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import UsageError


def split_ids(run_dir, split: str, tokenizer, notice: Callable | None = None) -> np.ndarray:
    """Ids of a run's ``val`` or ``test`` split: the characters its training used (see ``run_split``)."""
    return run_split(run_dir, split, tokenizer, notice)[0]


def run_split(run_dir, split: str, tokenizer, notice: Callable | None = None) -> tuple[np.ndarray, dict]:
    """(ids (N,) int32 of a run's ``val`` or ``test`` split, the run's saved train config).

    The ids are exactly those the training split off: RUN_DIR/ids.npy (the corpus as the run encoded
    it) cut by the run's --val-frac/--test-frac/--val-split; with --val-split each over several
    sources, the sources are read again to find where each begins. Either way the ids must have the
    corpus fingerprint of the run's checkpoint: a corpus changed since training is refused, never
    silently evaluated as another split.
    """
    import json
    import os
    import tempfile

    from . import corpus, rundir
    from .boundedread import read_bytes
    from .errors import UnknownSymbolsError
    from .finetune import with_policy

    if split not in ("val", "test"):
        raise UsageError(f"unknown split {split!r}: choose val or test")
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        run_dir = os.path.dirname(os.path.abspath(run_dir))
    path = os.path.join(run_dir, rundir.CONFIG)
    if not os.path.lexists(path):
        raise UsageError(f"{run_dir} has no config.json, so its corpus split is unknown: "
                         "pass --file TEXT instead of --split")
    try:
        saved = json.loads(read_bytes(path, limit=rundir.MAX_CONFIG_BYTES, what="run config").decode("utf-8"))
        if isinstance(saved, dict) and "corpus" not in saved and saved.get("imported_from"):
            raise UsageError(f"{run_dir} was made by charlm import (from {saved['imported_from']}): it has no "
                             "training corpus, so no val/test split; pass --file TEXT instead of --split")
        data, train = saved["corpus"], saved["train"]
        if not isinstance(data, dict) or not isinstance(train, dict):
            raise TypeError("corpus and train must be objects")
        sources = [str(s) for s in data["sources"]]
        val_frac, test_frac = float(train.get("val_frac", 0.0)), float(train.get("test_frac", 0.0))
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise UsageError(f"{path} is not a valid run config ({str(e)[:100]}): pass --file TEXT instead of "
                         "--split") from None
    each = train.get("val_split", "tail") == "each"
    want = _fingerprint(run_dir)
    changed = (f"the corpus has changed since {run_dir} was trained (it no longer matches the checkpoint's "
               "fingerprint), so --split would evaluate other text; restore it, or pass --file TEXT")
    starts, ids = None, None
    with tempfile.TemporaryDirectory(prefix="charlm-split-") as tmp:
        if not (each and len(sources) > 1 and corpus.rereadable(sources)):
            ids = _saved_ids(os.path.join(run_dir, rundir.IDS), tokenizer, want)
        if ids is None:
            if not corpus.rereadable(sources):
                raise UsageError("the run was trained on stdin, which cannot be read again, and its ids.npy is "
                                 "gone or does not match the run: pass --file TEXT")
            opts = {k: data[k] for k in ("encoding", "errors", "glob") if data.get(k) is not None}
            starts = [] if each else None
            enc = with_policy(tokenizer, data.get("unknown", "error"))
            try:
                ids, _, _ = corpus.load_ids(sources, out=os.path.join(tmp, rundir.IDS), tokenizer=enc,
                                            read=corpus.ReadSpec(notice=notice, **opts), starts=starts)
            except UnknownSymbolsError:
                raise UsageError(changed) from None
            if want is not None and corpus.fingerprint(ids) != want:
                raise UsageError(changed)
        _, val, test = corpus.split_ids(ids, val_frac, test_frac, starts=starts or None)
        part = np.array(val if split == "val" else test, dtype=np.int32)
    if len(part) < 2:
        frac = "val_frac" if split == "val" else "test_frac"
        held = f"the run's {split} split holds {len(part)} characters"
        raise UsageError(f"{held} ({frac} = {train.get(frac, 0.0)}): nothing to evaluate; pass --file TEXT",
                         cli=f"{held} (it trained with --{split}-frac {train.get(frac, 0.0)}): nothing to "
                             "evaluate; pass --file TEXT")
    return part, train


def _fingerprint(run_dir: str) -> str | None:
    """The corpus fingerprint recorded in the run's newest checkpoint (None for runs without one)."""
    from .checkpoint import newest_meta

    meta = newest_meta(run_dir)
    fp = meta.get("data_fingerprint") if isinstance(meta, dict) else None
    return fp if isinstance(fp, str) else None


def _saved_ids(path: str, tokenizer, want: str | None) -> np.ndarray | None:
    """RUN/ids.npy if it is sound and has the run's fingerprint, else None (the corpus is read again)."""
    import os

    from . import corpus

    if not os.path.isfile(path):
        return None
    try:
        ids = corpus.load_saved_ids(path, tokenizer)
    except UsageError:
        return None
    return ids if want is None or corpus.fingerprint(ids) == want else None
