"""A trained model as a library object: ``load(path)`` -> ``Model`` with sample, eval and score.
(Loading and its checks: ``charlm.loading``; a run's held-out splits: ``charlm.runsplit``.)

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
from .errors import UsageError
from .loading import checkpoint_steps, lm_config_and_tokenizer, load, load_checkpoint  # noqa: F401 (the API's home)
from .runsplit import run_split, split_ids  # noqa: F401 (re-exported)

CHUNK = 64
MIN_TEMPERATURE = 1e-4   # a smaller temperature samples as 0 (the most likely symbol): 1/T would overflow
WINDOW = 256
UNKNOWN = ("error", "skip", "replace")


def _warn(msg: str) -> None:
    warnings.warn(msg, stacklevel=3)


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
    def iter_sample(self, config: SampleConfig | None = None, *, prime: str = "", unknown: str = "error",
                    echo_prime: bool = True, notice: Callable | None = None, **options) -> Iterator[list[str]]:
        """Yield lists of ``num_samples`` new text pieces ("" for a finished sample) as they are made.

        How to draw: a ``SampleConfig``, or its fields as keywords (``length=500, temperature=1.0,
        top_k=0, top_p=1.0, seed=None, num_samples=1, stop=()``; keywords win over ``config``).
        ``stop`` may be one string."""
        from .backends.cpu import sample as kernels

        cfg = _sample_config(config, options)
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

    def sample(self, config: SampleConfig | None = None, *, prime: str = "", unknown: str = "error",
               echo_prime: bool = True, stream: Callable | None = None, notice: Callable | None = None,
               **options) -> str | list[str]:
        """Generated text (one str, or a list when num_samples > 1); ``stream(index, text)`` sees pieces.
        Options as ``iter_sample``'s (a ``SampleConfig`` or its fields as keywords)."""
        cfg = _sample_config(config, options)
        num_samples = cfg.num_samples
        parts: list[list[str]] = [[] for _ in range(num_samples)]
        for pieces in self.iter_sample(cfg, prime=prime, unknown=unknown, echo_prime=echo_prime, notice=notice):
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
        with self.model.frozen():  # the weights are packed once for all the windows
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


def _sample_config(config: SampleConfig | None, options: dict) -> SampleConfig:
    """``config`` with ``options`` (SampleConfig's field names) applied; the checks a sample needs."""
    base = (config or SampleConfig()).to_dict()
    unknown = sorted(set(options) - set(base))
    if unknown:
        raise TypeError(f"unexpected sampling option(s): {', '.join(unknown)}")
    stop = options.get("stop", base["stop"])
    options["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    cfg = SampleConfig(**{**base, **options})
    if any(not isinstance(s, str) or not s for s in cfg.stop):
        raise UsageError("--stop needs a non-empty string")
    seed = cfg.seed
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise UsageError(f"--seed must be a non-negative integer, got {seed!r}")
    return cfg


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
