"""A trained model as a library object: ``load(path)`` -> ``Model`` with sample, eval and score.

Sampling runs the compiled loop of ``charlm.backends.cpu.sample`` in chunks of ``CHUNK`` tokens
(state carried between calls), so text can be streamed as it is made. Rules:
    - ``length`` counts tokens: characters, or bytes for a byte-level tokenizer.
    - The prime is fed first (its state carried); an empty prime starts from an implicit newline when
      the vocabulary has one, else from the most frequent symbol (``start_id``); neither is echoed.
    - ``stop``: a sample ends at the first occurrence of any stop string in the generated text (the
      prime is not searched); the stop string is included.
    - Same seed, same text (``seed=None`` draws a fresh one). num_samples > 1 run together as a batch.
    - A temperature below ``MIN_TEMPERATURE`` (1e-4) samples as temperature 0 (the most likely symbol),
      since 1/T would overflow; the memory of a batch is estimated first (``charlm.memory``).
    - Unknown prime symbols: "error" (default) names them; "skip" drops them; "replace" maps them to the
      tokenizer's unknown id, else to the most frequent symbol by the tokenizer's counts (id 0 if the
      tokenizer has no counts). Skip and replace report through ``notice``.
Evaluation (``eval``): mean nats per token over positions 1..N-1 of the text, each predicted from its
whole prefix: zero initial state, state carried through the whole text (windows of ``WINDOW``, B=1).
``chars`` is the number of positions predicted (N-1). bpc = nats / ln 2, perplexity = e^nats.
Scoring (``score``/``score_lines``): each line on its own, from zero state, with the newline that
precedes a line as context when the vocabulary has one (then every character of the line is
predicted; otherwise the first is not). A line with nothing predicted gets bpc None.
"""

from __future__ import annotations

import math
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .config import LN2, ModelConfig, SampleConfig
from .errors import CheckpointError, UsageError

CHUNK = 64
MIN_TEMPERATURE = 1e-4   # a smaller temperature samples as 0 (the most likely symbol): 1/T would overflow
WINDOW = 256
UNKNOWN = ("error", "skip", "replace")
# model files of other tasks (model_config["task"]) -> the command that uses them
_OTHER_TASKS = {"seq2seq": "charlm seq2seq translate RUN TEXT", "classify": "charlm classify predict RUN TEXT",
                "tag": "charlm tag RUN TEXT"}


def _warn(msg: str) -> None:
    warnings.warn(msg, stacklevel=3)


def load(path, *, device: str = "cpu", checkpoint=None) -> Model:
    """Load a ``RUN_DIR`` or ``model.safetensors`` written by charlm.

    ``checkpoint`` picks a resume checkpoint of RUN_DIR instead of its best model: a step number
    (one of the steps kept, see ``checkpoint_steps``) or the path of a checkpoint file.
    """
    from .backends import resolve_device
    from .checkpoint import load_model, resolve_model_path
    from .model import CharLM

    if checkpoint is not None:
        return load_checkpoint(path, checkpoint, device=device)
    _no_model_yet(path)
    sd, meta = load_model(path)
    where = resolve_model_path(path)
    config, tok = lm_config_and_tokenizer(where, sd, meta)
    model = CharLM.from_state_dict(config, sd, device=resolve_device(device))
    return Model(model, tok, meta=meta)


def lm_config_and_tokenizer(where, sd: dict, meta: dict):
    """(ModelConfig, CharTokenizer) of a language-model file's metadata, after the checks every reader of
    one needs: the file is a language model, its config and vocabulary agree, its weights are finite."""
    from .tokenizer import CharTokenizer

    task = meta["model_config"].get("task")
    if task in _OTHER_TASKS:
        raise UsageError(f"{where} is a {task} model, not a language model: use {_OTHER_TASKS[task]}")
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (UsageError, TypeError) as e:
        raise CheckpointError(f"{where}: bad model_config ({e}); the file is corrupt or foreign") from None
    tok = CharTokenizer.from_dict(meta["tokenizer"])
    if len(tok) != config.vocab_size:
        raise CheckpointError(f"{where}: the tokenizer has {len(tok)} symbols but the model {config.vocab_size}; "
                              "the file is corrupt: retrain or use another file")
    bad = next((name for name, a in sd.items() if not np.isfinite(a).all()), None)
    if bad is not None:
        raise CheckpointError(f"{where}: tensor {bad!r} holds NaN or infinite values (the training diverged, or "
                              "the file was damaged before its checksum was made): use an earlier checkpoint "
                              "or retrain")
    return config, tok


def checkpoint_steps(run_dir) -> dict:
    """{step: path} of the resume checkpoints of RUN_DIR that can be read (headers only)."""
    from . import tensorfile
    from .checkpoint import CHECKPOINT_FORMAT, _checker, checkpoint_paths
    from .errors import CharlmError

    found = {}
    for p in checkpoint_paths(run_dir):
        if not p.is_file():
            continue
        try:
            md, _ = tensorfile.read(p, missing_msg="", header_only=True, check_meta=_checker(CHECKPOINT_FORMAT))
        except CharlmError:
            continue
        found.setdefault(int(md["step"]), p)
    return dict(sorted(found.items()))


def _saved_steps(found: dict) -> str:
    return ", ".join(str(k) for k in found) if found else "none yet"


def _no_model_yet(path) -> None:
    """A run directory that has not written model.safetensors yet: say when it will, and what to do now."""
    import json
    import os

    from . import rundir
    from .checkpoint import MODEL_NAME

    run_dir = os.fspath(path)
    if not os.path.isdir(run_dir) or os.path.exists(os.path.join(run_dir, MODEL_NAME)):
        return
    try:
        with open(os.path.join(run_dir, rundir.CONFIG), encoding="utf-8") as f:
            train = json.load(f)["train"]
        eval_every, save_every = int(train["eval_every"]), int(train["save_every"])
        interval = float(train.get("eval_interval", 120.0))
    except (OSError, ValueError, KeyError, TypeError):
        return  # not a run directory: the model loader names the missing file
    found = checkpoint_steps(run_dir)
    # eval_every 0: evaluations on the clock, the first 30 s after the first step (charlm.trainer)
    when = f"step {eval_every}" if eval_every else f"{min(30.0, interval):g}s after the first step"
    head = (f"{run_dir} has no model yet: model.safetensors is written at the first evaluation ({when}) "
            "or when training ends. ")
    if found:
        last = list(found)[-1]
        raise UsageError(head + f"Sample a checkpoint meanwhile: load({run_dir!r}, checkpoint={last}) "
                         f"(checkpoints at steps {_saved_steps(found)})",
                         cli=head + f"Sample a checkpoint meanwhile: charlm sample {run_dir} --checkpoint {last} "
                             f"(checkpoints at steps {_saved_steps(found)})")
    if save_every and (not eval_every or save_every < eval_every):
        raise UsageError(head + f"No checkpoint either: the first is saved at step {save_every}; then sample it "
                         f"with --checkpoint {save_every}")
    raise UsageError(head + "No checkpoint either: the first is saved with the first evaluation")


def load_checkpoint(run_dir, which, *, device: str = "cpu") -> Model:
    """The weights of one resume checkpoint: ``which`` is a step of RUN_DIR's checkpoints or a file path."""
    import os
    from pathlib import Path

    from .backends import resolve_device
    from .checkpoint import _read_checkpoint
    from .model import CharLM
    from .tokenizer import CharTokenizer

    text = str(which)
    if os.path.isfile(text):
        path = Path(text)
    elif text.isdigit():
        base = os.fspath(run_dir)
        if not os.path.isdir(base):
            base = os.path.dirname(os.path.abspath(base))
        found = checkpoint_steps(base)
        if int(text) not in found:
            raise UsageError(f"{base} has no checkpoint at step {int(text)}: steps kept are "
                             f"{_saved_steps(found)} (--keep N keeps more)")
        path = found[int(text)]
    else:
        raise UsageError(f"checkpoint {text!r} is neither a step number nor a checkpoint file")
    step, tensors, meta = _read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        tok = CharTokenizer.from_dict(meta["tokenizer"])
        flat = tensors["model.flat"]
    except (UsageError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: not a usable charlm training checkpoint ({e}); use another file") from None
    model = CharLM(config, seed=0, device=resolve_device(device))
    if flat.shape != (model.size,) or len(tok) != config.vocab_size:
        raise CheckpointError(f"{path}: the weights or the vocabulary do not match its model config; "
                              "the file is corrupt: use another checkpoint")
    model.flat[:] = model.backend.to_device(flat.astype(model.dtype))
    return Model(model, tok, meta={"model_config": meta["model_config"], "tokenizer": meta["tokenizer"],
                                   "extra": {"step": step}, "checkpoint": str(path)})


def sample_model(model, tokenizer, **kwargs) -> str | list[str]:
    """``Model(model, tokenizer).sample(**kwargs)`` for a CharLM in memory (e.g. during training)."""
    return Model(model, tokenizer).sample(**kwargs)


class Model:
    """A CharLM with its tokenizer."""

    def __init__(self, model, tokenizer, *, meta: dict | None = None):
        from .backends import cpu

        cpu.configure()  # the kernels' thread settings, before sampling or evaluating
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta or {}

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def __repr__(self) -> str:
        c = self.config
        return f"Model({c.cell} {c.layers}x{c.hidden}, vocab {c.vocab_size}, {self.tokenizer.level} level)"

    # ------------------------------------------------------------------ symbols
    def _id_of(self, symbol: str) -> int | None:
        tok = self.tokenizer
        key = symbol.encode()[0] if tok.level == "byte" and len(symbol.encode()) == 1 else symbol
        try:
            return tok.vocab.index(key)
        except ValueError:
            return None

    def _most_frequent(self) -> int:
        counts = self.tokenizer.counts
        if not counts:
            return 0
        known = [(c, -i) for i, c in enumerate(counts) if self.tokenizer.vocab[i] is not None]
        return -max(known)[1] if known else 0

    @property
    def start_id(self) -> int:
        """Input that starts generation when the prime is empty: newline, else the most frequent symbol."""
        nl = self._id_of("\n")
        return self._most_frequent() if nl is None else nl

    def _unknown_symbols(self, text: str) -> list[str]:
        tok = self.tokenizer
        if tok.normalize:
            text = unicodedata.normalize(tok.normalize, text)
        known = {s for s in tok.vocab if s is not None}
        if tok.level == "byte":
            return [f"0x{b:02x}" for b in sorted(set(text.encode("utf-8", "surrogatepass")) - known)]
        return [repr(ch) for ch in sorted(set(text) - known)]

    def encode_prime(self, prime: str, unknown: str = "error", notice: Callable | None = None) -> np.ndarray:
        """Ids (P,) int32 of the prime under an unknown-symbol policy (see the module docstring)."""
        notice = notice or _warn
        if unknown not in UNKNOWN:
            raise UsageError(f"unknown policy {unknown!r}: choose error, skip or replace")
        bad = self._unknown_symbols(prime)
        if not bad:
            return self.tokenizer.encode(prime)
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        if unknown == "error":
            head = f"the prime has symbols the model never saw: {shown}. Fix: drop them, or pass "
            raise UsageError(head + 'unknown="skip" (drop) or unknown="replace" (map to a known symbol)',
                             cli=head + "--unknown skip (drop) or --unknown replace (map to a known symbol)")
        ids = self.tokenizer.encode(prime, unknown="skip")
        if unknown == "skip":
            notice(f"prime: skipped symbols not in the vocabulary: {shown}")
            return ids
        tok = self.tokenizer
        rid = tok.unk_id if tok.unk_id is not None else self._most_frequent()
        how = "the unknown id" if tok.unk_id is not None else (
            f"the most frequent symbol {tok.vocab[rid]!r}" if tok.counts else f"symbol {tok.vocab[rid]!r} (id 0)")
        notice(f"prime: replaced symbols not in the vocabulary ({shown}) with {how}")
        if tok.unk_id is not None:
            return tok.encode(prime, unknown="replace")
        return self._replace_encode(prime, rid)

    def _replace_encode(self, text: str, rid: int) -> np.ndarray:
        tok = self.tokenizer
        if tok.normalize:
            text = unicodedata.normalize(tok.normalize, text)
        index = {s: i for i, s in enumerate(tok.vocab) if s is not None}
        syms = text.encode("utf-8", "surrogatepass") if tok.level == "byte" else text
        return np.array([index.get(s, rid) for s in syms], dtype=np.int32)

    # ------------------------------------------------------------------ sampling
    def iter_sample(self, length: int = 500, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    seed: int | None = None, prime: str = "", num_samples: int = 1, stop: Iterable[str] = (),
                    unknown: str = "error", echo_prime: bool = True,
                    notice: Callable | None = None) -> Iterator[list[str]]:
        """Yield lists of ``num_samples`` new text pieces ("" for a finished sample) as they are made."""
        from .backends.cpu import sample as kernels

        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        cfg = SampleConfig(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                           num_samples=num_samples, stop=stop)
        if any(not isinstance(s, str) or not s for s in cfg.stop):
            raise UsageError("--stop needs a non-empty string")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise UsageError(f"--seed must be a non-negative integer, got {seed!r}")
        from .memory import check_sampling

        ids = self.encode_prime(prime, unknown, notice)
        c, B = self.config, cfg.num_samples
        check_sampling(c, B, cfg.length)   # before any (L, B, H) buffer exists
        params = self.model.params if self.model.device == "cpu" else self.model.state_dict()
        w = kernels.prepare(c.cell, params, c.layers, c.nonlinearity == "relu")
        h = np.zeros((c.layers, 1, c.hidden), np.float32)    # (L, 1, H)
        cc = np.zeros_like(h)                                 # (L, 1, H)
        if ids.size > 1:
            kernels.consume(w, h, cc, ids[:-1])
        h = np.ascontiguousarray(np.repeat(h, B, axis=1))     # (L, B, H)
        cc = np.ascontiguousarray(np.repeat(cc, B, axis=1))   # (L, B, H)
        x = np.full(B, ids[-1] if ids.size else self.start_id, dtype=np.int32)   # (B,)
        temp = cfg.temperature if cfg.temperature >= MIN_TEMPERATURE else 0.0   # 1/T would overflow: argmax
        rng = np.random.default_rng(cfg.seed)
        if echo_prime and prime:
            yield [prime] * B
        decoders = [self.tokenizer.stream_decoder() for _ in range(B)]
        keep = max((len(s) for s in cfg.stop), default=1) - 1
        tails = [""] * B
        done = [False] * B
        made = 0
        while made < cfg.length and not all(done):
            n = min(CHUNK, cfg.length - made)
            out = np.zeros((B, n), np.int32)                  # (B, n)
            kernels.generate(w, h, cc, x, out, temp, cfg.top_k, cfg.top_p, rng)
            made += n
            final = made >= cfg.length
            pieces = []
            for b in range(B):
                if done[b]:
                    pieces.append("")
                    continue
                text = decoders[b].decode(out[b], final=final)
                if cfg.stop:
                    text, done[b] = _cut_at_stop(tails[b], text, cfg.stop)
                    tails[b] = (tails[b] + text)[-keep:] if keep else ""
                pieces.append(text)
            yield pieces

    def sample(self, length: int = 500, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               seed: int | None = None, prime: str = "", num_samples: int = 1, stop: Iterable[str] = (),
               unknown: str = "error", echo_prime: bool = True, stream: Callable | None = None,
               notice: Callable | None = None) -> str | list[str]:
        """Generated text (one str, or a list when num_samples > 1); ``stream(index, text)`` sees pieces."""
        parts: list[list[str]] = [[] for _ in range(num_samples)]
        for pieces in self.iter_sample(length, temperature, top_k, top_p, seed, prime, num_samples, stop,
                                       unknown, echo_prime, notice):
            for b, text in enumerate(pieces):
                if text:
                    parts[b].append(text)
                    if stream is not None:
                        stream(b, text)
        texts = ["".join(p) for p in parts]
        return texts[0] if num_samples == 1 else texts

    # ------------------------------------------------------------------ evaluation
    def encode_text(self, text: str, unknown: str = "error", notice: Callable | None = None):
        """(ids (N,) int32, number of symbols dropped) for eval; ``replace`` needs a tokenizer unknown id."""
        if unknown not in UNKNOWN:
            raise UsageError(f"unknown policy {unknown!r}: choose error, skip or replace")
        tok = self.tokenizer
        if unknown == "error":
            bad = self._unknown_symbols(text)
            if bad:
                shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
                head = f"the text has symbols the model never saw: {shown}. Fix: pass "
                raise UsageError(head + 'unknown="skip" to leave them out of the score',
                                 cli=head + "--unknown skip to leave them out of the score")
            return tok.encode(text), 0
        ids = tok.encode(text, unknown=unknown)
        norm = unicodedata.normalize(tok.normalize, text) if tok.normalize else text
        total = len(norm.encode("utf-8", "surrogatepass")) if tok.level == "byte" else len(norm)
        dropped = total - ids.size
        if dropped and notice is not None:
            bad = self._unknown_symbols(text)
            shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            notice(f"skipped {len(bad)} distinct symbol{'s' * (len(bad) != 1)} not in the vocabulary "
                   f"({dropped} occurrence{'s' * (dropped != 1)}): {shown}")
        return ids, dropped

    def nats(self, ids, context: int | None = None) -> tuple[float, int]:
        """(sum of nats, positions predicted) of ids (N,) from zero state; ``context`` id fed first."""
        ids = np.asarray(ids, dtype=np.int32)
        if context is not None:
            ids = np.concatenate([np.array([context], np.int32), ids])
        n = ids.size - 1
        if n <= 0:
            return 0.0, 0
        state = self.model.init_state(1)
        total = 0.0
        for s in range(0, n, WINDOW):
            e = min(s + WINDOW, n)
            x = np.ascontiguousarray(ids[s:e].reshape(-1, 1))            # (T, 1)
            y = np.ascontiguousarray(ids[s + 1:e + 1].reshape(-1, 1))    # (T, 1)
            loss, _, state = self.model.loss(x, y, state)
            total += loss
        return total, n

    def eval_streams(self, ids, batch_size: int, seq_len: int) -> dict:
        """Metrics over ids (N,) scored as training scores its validation split: ``batch_size``
        contiguous streams, each from a zero state, in windows of ``seq_len`` (``train.evaluate_ids``).
        A run's ``--split`` evaluated this way with the run's batch size and window length gives the
        numbers of its training log; ``eval_ids`` (one stream) is a little lower, fewer fresh starts."""
        from .evaluation import evaluate_ids

        ids = np.asarray(ids)
        if ids.size < 2:
            raise UsageError("the text is too short to evaluate: it needs at least 2 characters")
        return _metrics(evaluate_ids(self.model, ids, batch_size, seq_len) * (ids.size - 1), ids.size - 1)

    def eval_ids(self, ids) -> dict:
        """Metrics over ids (N,), N >= 2 (see the module docstring)."""
        total, n = self.nats(ids)
        if n == 0:
            raise UsageError("the text is too short to evaluate: it needs at least 2 characters")
        return _metrics(total, n)

    def eval(self, text: str, *, unknown: str = "error", notice: Callable | None = None) -> dict:
        """{"loss_nats", "bpc", "perplexity", "chars", "skipped"} of a text."""
        ids, dropped = self.encode_text(text, unknown, notice)
        return {**self.eval_ids(ids), "skipped": dropped}

    def score_lines(self, lines: Iterable[str], *, unknown: str = "error",
                    notice: Callable | None = None) -> Iterator[dict]:
        """One {"line", "chars", "loss_nats", "bpc"} per line (1-based), each scored on its own."""
        nl = self._id_of("\n")
        for i, line in enumerate(lines, 1):
            ids, dropped = self.encode_text(line.rstrip("\r\n"), unknown, None)
            total, n = self.nats(ids, nl)
            m = _metrics(total, n) if n else {"loss_nats": None, "bpc": None}
            row = {"line": i, "chars": n, "loss_nats": m["loss_nats"], "bpc": m["bpc"]}
            if dropped:
                row["skipped"] = dropped
            yield row

    def score(self, text: str, *, unknown: str = "error") -> list[dict]:
        """``score_lines`` over the lines of ``text``."""
        return list(self.score_lines(text.splitlines(), unknown=unknown))


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
                                            notice=notice, starts=starts, **opts)
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


def _metrics(total: float, n: int) -> dict:
    nats = total / n
    return {"loss_nats": nats, "bpc": nats / LN2, "perplexity": math.exp(min(nats, 700.0)), "chars": n}


def _cut_at_stop(tail: str, text: str, stops) -> tuple[str, bool]:
    """Cut ``text`` after the earliest stop string that ends inside it (``tail`` precedes it)."""
    buf = tail + text
    ends = [i + len(s) for s in stops if (i := buf.find(s)) >= 0]
    if not ends:
        return text, False
    return text[:min(ends) - len(tail)], True
