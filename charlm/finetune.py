"""Fine-tuning: start a new run from a trained model (``charlm train NEW_TEXT --init-from SOURCE``).

What comes from SOURCE (a RUN_DIR or a model.safetensors): the model config (cell, layers,
hidden, embedding, nonlinearity; ``--dropout`` may change) and the vocabulary with its ids, so
every trained row keeps its meaning. What starts fresh: the optimizer state (moments, step count),
the learning-rate schedule (over the new budget), the data order and the carried hidden state.

Symbols of the new corpus that the vocabulary lacks follow ``--unknown``:
    error    (default) stop and name them
    skip     leave them out of the encoded corpus
    replace  map them to the vocabulary's unknown id; a vocabulary without one gets it as a new last id
    extend   add each of them as a new id after the existing ones (in code-point / byte order)
New ids get new rows in ``embed.weight``, ``head.weight`` and ``head.bias`` (and new input columns of
``rnn.weight_ih_l0`` in one-hot mode, ``embed=0``), initialised exactly as a fresh model of the new
size would be (same seed); every other value is the source's.

The run records where it came from: ``config.json`` and the model file's metadata ``extra`` hold
``fine_tuned_from`` = {"path", "step", "vocab_size", "added"}; ``charlm info`` shows it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import rundir
from .config import ModelConfig
from .errors import UsageError

POLICIES = ("error", "skip", "replace", "extend")
# model options that decide the weights' shapes or meaning: they come from the source
FIXED_MODEL_KEYS = ("cell", "layers", "hidden", "embed", "nonlinearity")


@dataclass
class Source:
    path: str                    # absolute path of the model file
    config: ModelConfig
    tokenizer: object            # CharTokenizer
    state_dict: dict
    step: int | None             # the step the source model was saved at (None: unknown, e.g. imported)

    def lineage(self, tokenizer) -> dict:
        """What the run records about its origin, once the (possibly extended) vocabulary is known."""
        return {"path": self.path, "step": self.step, "vocab_size": self.config.vocab_size,
                "added": len(tokenizer) - len(self.tokenizer)}


def read_source(path) -> Source:
    """The model to fine-tune: a RUN_DIR or a model.safetensors written by charlm (or charlm import)."""
    from .checkpoint import load_model, resolve_model_path

    where = resolve_model_path(path)
    if os.path.isdir(os.fspath(path)) and not where.exists() and not os.path.exists(os.path.join(path, rundir.CONFIG)):
        raise UsageError(f"--init-from {path}: not a charlm run directory (no config.json, no model.safetensors); "
                         "pass a RUN_DIR or a model.safetensors")
    if os.path.isdir(os.fspath(path)) and not where.exists():
        raise UsageError(f"--init-from {path}: the run has no model.safetensors yet (it is written at the "
                         "first evaluation); wait for it, or pass a model file")
    sd, meta = load_model(path)
    from .loading import lm_config_and_tokenizer

    config, tok = lm_config_and_tokenizer(where, sd, meta)  # same checks as sampling: task, vocab, finite
    step = meta.get("extra", {}).get("step")
    return Source(str(os.path.abspath(where)), config, tok, sd, step if isinstance(step, int) else None)


def model_options(source: Source, options: dict, explicit: set) -> dict:
    """The new run's model options: the source's, with ``--dropout`` the only one that may change."""
    base = {k: v for k, v in source.config.to_dict().items() if k != "vocab_size"}
    for k in FIXED_MODEL_KEYS:
        if k in explicit and options.get(k) is not None and options[k] != base[k]:
            raise UsageError(f"--{k} {options[k]} contradicts the model given to --init-from ({k} = {base[k]}): "
                             "the architecture comes from the source model; drop the option")
    if options.get("dropout") is not None:
        base["dropout"] = options["dropout"]
    return base


def check_data_options(source: Source, data) -> None:
    """Tokenization options must be the source tokenizer's."""
    tok = source.tokenizer
    if data.level != tok.level:
        raise UsageError(f"--level {data.level} contradicts the model given to --init-from ({tok.level} level): "
                         "drop --level; the vocabulary comes from the source model")
    if (data.normalize or None) != (tok.normalize or None):
        raise UsageError(f"--normalize {data.normalize} contradicts the model given to --init-from "
                         f"(normalize = {tok.normalize}): drop it; the vocabulary comes from the source model")
    if data.vocab_cap:
        raise UsageError("--vocab-cap does not apply to --init-from: the vocabulary comes from the source model "
                         "(use --unknown skip|replace|extend for new symbols)")


def missing_symbols(tokenizer, counts: np.ndarray) -> np.ndarray:
    """Symbol values (code points or bytes) that occur in ``counts`` (S,) but not in the vocabulary: (K,)."""
    present = np.flatnonzero(counts)
    known = np.asarray([ord(s) if isinstance(s, str) else s for s in tokenizer.vocab if s is not None], np.int64)
    return np.setdiff1d(present, known)


def adapt_vocabulary(tokenizer, counts: np.ndarray, policy: str, notice) -> tuple[object, object]:
    """(the run's tokenizer, the tokenizer that encodes the new corpus) under ``policy``.

    ``counts`` are the dense symbol counts of the new corpus (``corpus.count_sources``).
    """
    from .tokenizer import CharTokenizer, symbol_repr

    if policy not in POLICIES:
        raise UsageError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    missing = missing_symbols(tokenizer, counts)
    if missing.size == 0:
        return tokenizer, tokenizer
    conv = int if tokenizer.level == "byte" else chr
    order = missing[np.argsort(-counts[missing], kind="stable")]
    shown = ", ".join(f"{symbol_repr(conv(int(v)))} x{int(counts[v])}" for v in order[:10])
    shown += f", and {missing.size - 10} more" if missing.size > 10 else ""
    n = int(counts[missing].sum())
    what = f"{n} symbols of the new corpus ({missing.size} distinct) are not in the model's vocabulary: {shown}"
    d = tokenizer.to_dict()
    if policy == "error":
        raise UsageError(f'{what}. Fix: unknown="skip" (drop them), "replace" (one unknown id) or "extend" '
                         "(new ids, new rows in the embedding and the head)",
                         cli=f"{what}. Fix: --unknown skip (drop them), replace (one unknown id) or extend "
                             "(new ids, new rows in the embedding and the head)")
    if policy == "skip":
        notice(f"fine-tuning: skipping {what}")
        return tokenizer, with_policy(tokenizer, "skip")
    counts_list = d["counts"] if d["counts"] is not None else None
    if policy == "replace":
        if tokenizer.unk_id is not None:
            notice(f"fine-tuning: mapping to the unknown id {what}")
            return tokenizer, tokenizer
        vocab = d["vocab"] + [None]
        counts_list = None if counts_list is None else counts_list + [n]
        notice(f"fine-tuning: adding one unknown id (id {len(tokenizer)}) for {what}")
        tok = CharTokenizer.from_dict({**d, "vocab": vocab, "unknown": "replace", "counts": counts_list})
        return tok, tok
    vocab = d["vocab"] + [conv(int(v)) for v in missing]
    if counts_list is not None:
        counts_list = counts_list + [int(counts[v]) for v in missing]
    notice(f"fine-tuning: adding {missing.size} new ids ({len(tokenizer)}..{len(tokenizer) + missing.size - 1}) "
           f"for {what}")
    tok = CharTokenizer.from_dict({**d, "vocab": vocab, "counts": counts_list})
    return tok, tok


def with_policy(tokenizer, policy: str):
    """A copy of ``tokenizer`` whose encode() applies ``policy`` to unknown symbols (for encoding a corpus;
    never saved: a skip policy on a vocabulary with an unknown id is not a valid tokenizer file)."""
    from .tokenizer import CharTokenizer

    if policy == tokenizer.unknown or (policy == "replace" and tokenizer.unk_id is None):
        return tokenizer
    tok = CharTokenizer.from_dict(tokenizer.to_dict())
    tok.unknown = policy
    return tok


def spool_stdin(sources):
    """stdin ('-' among ``sources``) copied to a temporary file that each pass re-reads from its start
    (the vocabulary check and the encoding both read the corpus); None without '-'."""
    import sys
    import tempfile

    if "-" not in sources:
        return None
    stream = sys.stdin
    if stream is None or getattr(stream, "closed", False):
        raise UsageError("stdin is closed: pipe text in, or pass a file instead of '-'")
    buf = getattr(stream, "buffer", stream)
    tmp = tempfile.TemporaryFile()
    while block := buf.read(1 << 22):
        tmp.write(block if isinstance(block, bytes) else block.encode("utf-8"))
    return _Rewinding(tmp)


class _Rewinding:
    """A binary stream that starts again from the beginning after every end of file."""

    def __init__(self, f):
        self.f, self.at_end = f, True

    def read(self, n=-1):
        if self.at_end:
            self.f.seek(0)
            self.at_end = False
        block = self.f.read(n)
        if not block:
            self.at_end = True
        return block

    def close(self):
        self.f.close()


def transfer(model, source: Source) -> None:
    """Copy the source's weights into ``model`` (freshly initialised, vocabulary >= the source's).

    Rows (and one-hot input columns) of ids beyond the source's vocabulary keep their fresh values.
    """
    V0 = source.config.vocab_size
    old = source.state_dict
    sd = model.state_dict()
    for name, value in sd.items():
        src = old[name]
        if name in ("embed.weight", "head.weight", "head.bias"):
            value[:V0] = src                                   # (V0, ...) rows of the known ids
        elif name == "rnn.weight_ih_l0" and model.config.embed == 0:
            value[:, :V0] = src                                # (G*H, V0) one-hot input columns
        else:
            value[...] = src
    model.load_state_dict(sd)
