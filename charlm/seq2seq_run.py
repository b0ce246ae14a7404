"""Training, saving, loading, translating and evaluating a seq2seq model (the library behind `charlm seq2seq`).

Training: the pairs are shuffled (``seed``) and split into train / validation (``val_frac``, at least one pair
when there are 10 or more); both vocabularies are built from all pairs. Each epoch re-buckets the training
pairs by source length (charlm.pairs.buckets, ``bucket_width``: below) in a new order; Adam with a cosine
decay over the step budget, global-norm clipping. The budget is ``max_steps`` and/or ``epochs`` and/or
``max_time`` seconds (the first reached stops). At the end the validation pairs are scored (nats/char) and
greedily decoded (exact match, CER).

Run directory: ``model.safetensors`` (state dict with PyTorch names; metadata ``model_config`` =
{"task": "seq2seq", ...Seq2SeqConfig}, ``tokenizer`` = {"source": vocab, "target": vocab, "shared": bool},
``extra`` = {"train": the training options, "max_target_len": longest training target, "metrics": final
metrics}) and ``config.json`` (the same, for reading).

Batching (``bucket_width``, charlm.pairs.buckets): the default puts sources of up to 64 consecutive lengths in
one bucket, padded to the longest (every built-in task is then one bucket: random batches); ``--bucket-width 1``
is the alternative, one exact source length per batch. Measured with bench/bench_buckets.py (LSTM 1x64,
embedding 16, general attention, batch 32, Adam 5e-3 cosine, one thread; a 2-core AMD EPYC shared with other
jobs, load 2-10, so pairs/s are indicative; held-out greedy exact match after each epoch, seeds 0 / 1):
    autoencode:n=3000 (5-58 chars), 5 epochs: width 1 1324 pairs/s, exact 0.03 / 0.03 at the end; 8: 1243,
        0.14 / 0.21; 16: 1255, 0.50 / 0.51; 32: 1019, 0.62 / 0.53; 64 (one bucket, 68% source padding): 813,
        0.93 / 0.87. 9 epochs, seed 0: width 64 >= 0.95 after 3 epochs (10 s), width 16 after 5 (14 s).
    dates:n=3000,weekday=1 (17-28 chars), 6 epochs: width 1 4476 pairs/s, >= 0.95 after epoch 2 / 5;
        width 12 (one bucket) 4200 pairs/s, after epoch 3 / 4 (1.3 / 3.4 s vs 2.1 / 2.9 s of training).
    numbers:n=5000 (1-3 chars), 5 epochs: width 1 3087 pairs/s, >= 0.99 after epoch 3 / 3; width 3 (one
        bucket) 2371 pairs/s, after epoch 2 / 2 (4.9 s vs 4.2 s).
Exact buckets run more pairs/s (no padding of the targets across lengths, one cell call per layer), but their
batches are correlated (one source length: in autoencode, copies of one or two sentences), so they need more
epochs; the padded buckets reached each accuracy in the same or less training time, far less on autoencode.
Their cost per pair grows with the number of distinct lengths in a batch (one encoder cell call per length per
layer and direction, charlm.encoder): at bench_seq2seq's size (LSTM 1x128, embedding 32, batch 64, dates
weekday=1, 9.7 lengths per batch) train_step ran 1562 pairs/s padded against 1971 exact (load 2-4).

Decoding length: at most ``max_len_ratio`` x source length + the longest training target symbols.
Metrics (``evaluate``): exact match = decoded == target; CER = total Levenshtein edits / total target
characters; nats/char = mean -log p of the target characters and EOS under teacher forcing.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np

from . import rundir
from .config import TrainConfig, _check, _DictMixin
from .errors import CheckpointError, UsageError
from .optim import Optimizer, learning_rate
from .pairs import PairVocab, buckets, build_vocabs, encode_pairs, make_batch, read_pairs
from .safefile import atomic_write_text, fresh_run
from .seq2seq import DECODERS, Seq2Seq, Seq2SeqConfig

BUCKET_WIDTH = 64   # the default --bucket-width (measured: module docstring)


@dataclass(frozen=True)
class Seq2SeqTrainConfig(_DictMixin):
    batch_size: int = 64
    lr: float = 3e-3
    max_steps: int = 0            # 0 = no step limit
    epochs: float = 0.0           # 0 = no epoch limit
    max_time: float = 0.0         # seconds, 0 = no limit
    val_frac: float = 0.1
    ss_rate: float = 0.0          # scheduled-sampling rate (two-pass), 0 = pure teacher forcing
    clip_norm: float = 5.0
    seed: int = 0
    log_every: int = 100
    shared_vocab: bool = False
    max_target_len: int = 0       # 0 = no limit; longer targets are an error naming the line
    val_decode: int = 500         # validation pairs decoded for exact match at the end (0 = all)
    threads: int = 1              # Numba threads (0 = every CPU); NumPy BLAS runs on 1 thread meanwhile
    bucket_width: int = BUCKET_WIDTH   # source lengths per batch bucket (1 = exact lengths; module docstring)

    def __post_init__(self):
        _check(self.batch_size >= 1, "--batch-size must be >= 1")
        _check(self.lr > 0, "--lr must be > 0")
        _check(self.max_steps >= 0 and self.epochs >= 0 and self.max_time >= 0,
               "--max-steps, --epochs and --max-time must be >= 0")
        _check(self.max_steps or self.epochs or self.max_time,
               "give a budget: --max-steps N, --epochs E or --max-time SECONDS")
        _check(0.0 <= self.val_frac < 1.0, "--val-frac must be in [0, 1)")
        _check(0.0 <= self.ss_rate <= 1.0, "--scheduled-sampling must be in [0, 1]")
        _check(self.clip_norm >= 0, "--clip-norm must be >= 0")
        _check(self.log_every >= 1, "--log-every must be >= 1")
        _check(self.threads >= 0, "--threads must be >= 0 (0 = every CPU)")
        _check(self.bucket_width >= 1, "--bucket-width must be >= 1")


@contextmanager
def cores(threads: int = 0):
    """Numba's pool gets ``threads`` (0 = all CPUs); NumPy's BLAS (the attention's small batched GEMMs) runs
    on one thread meanwhile: its own threads on top of Numba's oversubscribe the cores (measured: 7x slower
    training of a small model on a busy 2-core machine)."""
    from threadpoolctl import threadpool_limits

    from .trainsetup import set_threads

    set_threads(threads)
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def split_pairs(pairs, val_frac: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = int(round(len(pairs) * val_frac))
    if val_frac > 0 and len(pairs) >= 10:
        n_val = max(1, n_val)
    n_val = min(n_val, len(pairs) - 1)
    return [pairs[i] for i in order[n_val:]], [pairs[i] for i in order[:n_val]]


def train(pairs_spec: str, out: str | None, model: dict, train_cfg: Seq2SeqTrainConfig,
          notice: Callable | None = None, pairs=None) -> Translator:
    """Train on PAIRS (a file or a built-in task; or ``pairs`` given directly); write ``out`` when given."""
    with fresh_run(out, holder="charlm seq2seq train") if out is not None else nullcontext(), cores(train_cfg.threads):
        return _train(pairs_spec, out, model, train_cfg, notice, pairs)   # an empty ``out``, under its lock


def _train(pairs_spec, out, model, train_cfg, notice, pairs) -> Translator:
    notice = notice or (lambda msg: None)
    tc = train_cfg
    if pairs is None:
        pairs = read_pairs(pairs_spec, max_target_len=tc.max_target_len)
    if len(pairs) < 2:
        raise UsageError(f"{pairs_spec} holds {len(pairs)} pair: seq2seq training needs at least 2")
    train_pairs, val_pairs = split_pairs(pairs, tc.val_frac, tc.seed)
    sv, tv = build_vocabs(pairs, tc.shared_vocab)
    config = Seq2SeqConfig(src_vocab=len(sv), tgt_vocab=len(tv), **model)
    net = Seq2Seq(config, seed=tc.seed)
    srcs, tgts = encode_pairs(train_pairs, sv, tv)
    opt_cfg = TrainConfig(lr=tc.lr, clip_norm=tc.clip_norm, lr_schedule="cosine", max_steps=max(tc.max_steps, 1),
                          seed=tc.seed)
    opt = Optimizer(opt_cfg, net)
    per_epoch = len(buckets(srcs, tgts, tc.batch_size, 0, tc.bucket_width))
    total = min(x for x in (tc.max_steps, math.ceil(tc.epochs * per_epoch) if tc.epochs else 0) if x) \
        if (tc.max_steps or tc.epochs) else None
    rng = np.random.default_rng(tc.seed + 1)
    notice(f"seq2seq: {len(train_pairs)} training pairs, {len(val_pairs)} validation; {net.size:,} parameters; "
           f"{per_epoch} batches per epoch")
    t0, step, epoch, run_loss = time.monotonic(), 0, 0, []
    done = False
    while not done:
        for batch in buckets(srcs, tgts, tc.batch_size, tc.seed + epoch, tc.bucket_width):
            elapsed = time.monotonic() - t0
            if (total is not None and step >= total) or (tc.max_time and elapsed >= tc.max_time):
                done = True
                break
            progress = elapsed / tc.max_time if tc.max_time and total is None else None
            loss = net.train_step(batch, rng, tc.ss_rate)
            if not math.isfinite(loss):
                raise UsageError(f"training diverged at step {step} (loss {loss}); lower --lr")
            opt.clip()
            opt.step(learning_rate(opt_cfg, step, total, progress))
            run_loss.append(loss)
            step += 1
            if step % tc.log_every == 0:
                notice(f"step {step} epoch {epoch} loss {np.mean(run_loss):.4f} nats/char "
                       f"({time.monotonic() - t0:.1f}s)")
                run_loss = []
        epoch += 1
    seconds = time.monotonic() - t0
    tr = Translator(net, sv, tv, meta={"shared": tc.shared_vocab,
                                       "max_target_len": max(len(t) for _, t in pairs)})
    metrics = {"steps": step, "epochs": round(step / max(per_epoch, 1), 3), "seconds": round(seconds, 2)}
    if val_pairs:
        metrics.update({f"val_{k}": v for k, v in tr.evaluate(val_pairs[:tc.val_decode or None]).items()})
        notice(f"validation: exact {metrics['val_exact']:.4f}, CER {metrics['val_cer']:.4f}, "
               f"{metrics['val_nats_per_char']:.4f} nats/char over {metrics['val_pairs']} pairs")
    tr.meta.update({"train": tc.to_dict(), "metrics": metrics})
    if out is not None:
        tr.save(out)
    return tr


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


class Translator:
    """A Seq2Seq with its vocabularies: translate text, evaluate pairs, save and load."""

    def __init__(self, model: Seq2Seq, src_vocab: PairVocab, tgt_vocab: PairVocab, meta: dict | None = None):
        self.model, self.src_vocab, self.tgt_vocab = model, src_vocab, tgt_vocab
        self.meta = meta or {}

    @property
    def config(self) -> Seq2SeqConfig:
        return self.model.config

    def max_len(self, source_len: int, ratio: float) -> int:
        return int(ratio * source_len) + int(self.meta.get("max_target_len", 50)) + 1

    def encode_source(self, text: str, unknown: str = "error", notice: Callable | None = None) -> np.ndarray:
        ids = self.src_vocab.encode(text, unknown, "the source")
        if len(ids) != len(text) and notice is not None:
            notice(f"source: skipped characters not in the vocabulary: "
                   f"{', '.join(map(repr, self.src_vocab.unknown(text)))}")
        return ids

    def translate_ids(self, ids_list: list[np.ndarray], *, method: str = "greedy", beam: int = 4,
                      length_penalty: float = 1.0, max_len_ratio: float = 1.0, temperature: float = 1.0,
                      top_k: int = 0, top_p: float = 1.0, seed: int | None = None) -> list[str]:
        """Decoded targets for encoded sources (batched by buckets of source lengths, padded)."""
        if method not in DECODERS:
            raise UsageError(f"--decode must be one of {', '.join(DECODERS)}")
        if not max_len_ratio >= 0:
            raise UsageError("--max-len-ratio must be >= 0")
        rng = np.random.default_rng(seed)
        out: list[str | None] = [None] * len(ids_list)
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(ids_list):
            if len(ids) == 0:
                out[i] = ""
            else:
                groups.setdefault((len(ids) - 1) // BUCKET_WIDTH, []).append(i)
        for _, idx in sorted(groups.items()):
            for k in range(0, len(idx), 256):
                part = idx[k:k + 256]
                batch = make_batch([ids_list[i] for i in part], [ids_list[i][:0] for i in part])
                limits = [self.max_len(int(n), max_len_ratio) for n in batch.src_len]
                dec = self.model.decode(batch.src, lengths=batch.src_len, method=method, max_len=limits, beam=beam,
                                        length_penalty=length_penalty, temperature=temperature, top_k=top_k,
                                        top_p=top_p, rng=rng)
                for i, ids in zip(part, dec, strict=True):
                    out[i] = self.tgt_vocab.decode(ids)
        return out

    def translate(self, text: str, *, unknown: str = "error", notice: Callable | None = None, **kwargs) -> str:
        return self.translate_ids([self.encode_source(text, unknown, notice)], **kwargs)[0]

    def translate_lines(self, lines: Iterable[str], *, unknown: str = "error", notice: Callable | None = None,
                        **kwargs) -> Iterator[str]:
        """One translation per line, yielded as soon as it is made (streaming)."""
        for line in lines:
            yield self.translate(line.rstrip("\r\n"), unknown=unknown, notice=notice, **kwargs)

    def evaluate(self, pairs, *, unknown: str = "error", **kwargs) -> dict:
        """{"exact", "cer", "nats_per_char", "pairs"} over (source, target) pairs (module docstring)."""
        srcs, tgts = encode_pairs(pairs, self.src_vocab, self.tgt_vocab, unknown)
        hyps = self.translate_ids(srcs, **kwargs)
        exact = sum(h == t for h, (_, t) in zip(hyps, pairs, strict=True))
        edits = sum(levenshtein(h, t) for h, (_, t) in zip(hyps, pairs, strict=True))
        chars = sum(len(t) for _, t in pairs)
        nats, n = 0.0, 0
        for batch in buckets(srcs, tgts, 256, 0, BUCKET_WIDTH):
            s, k = self.model.loss(batch)
            nats, n = nats + s, n + k
        return {"exact": exact / len(pairs), "cer": edits / max(chars, 1), "nats_per_char": nats / max(n, 1),
                "pairs": len(pairs)}

    def attention_map(self, source: str, target: str | None = None, **kwargs):
        """(weights (T, S), source, target): teacher-forced on ``target``, else on the greedy translation."""
        src = self.encode_source(source)
        if target is None:
            target = self.translate_ids([src], **kwargs)[0]
        tgt = self.tgt_vocab.encode(target, "replace")
        return self.model.attention_map(src, tgt), source, target

    # ------------------------------------------------------------------ files
    def save(self, out) -> str:
        from .checkpoint import MODEL_NAME, save_model

        os.makedirs(out, exist_ok=True)
        model_config = {"task": "seq2seq", **self.config.to_dict()}
        tokenizer = {"source": self.src_vocab.to_dict(), "target": self.tgt_vocab.to_dict(),
                     "shared": bool(self.meta.get("shared"))}
        extra = {k: v for k, v in self.meta.items() if k != "shared"}
        save_model(os.path.join(out, MODEL_NAME), self.model.state_dict(), model_config=model_config,
                   tokenizer=tokenizer, extra=extra)
        atomic_write_text(os.path.join(out, rundir.CONFIG),
                          json.dumps({"task": "seq2seq", "model": model_config, "vocab": tokenizer, **extra}, indent=2))
        return out


def is_seq2seq(meta: dict) -> bool:
    return isinstance(meta.get("model_config"), dict) and meta["model_config"].get("task") == "seq2seq"


def load(path) -> Translator:
    """A Translator from a seq2seq RUN_DIR or its model.safetensors."""
    from .checkpoint import load_model, resolve_model_path

    sd, meta = load_model(path)
    where = resolve_model_path(path)
    if not is_seq2seq(meta):
        task = meta["model_config"].get("task") if isinstance(meta.get("model_config"), dict) else None
        what = f"a {task} model" if task in ("classify", "tag") else "a language model"
        raise UsageError(f"{where} is {what}, not a seq2seq model: train one with charlm seq2seq train")
    try:
        cfg = dict(meta["model_config"])
        cfg.pop("task")
        config = Seq2SeqConfig.from_dict(cfg)
        sv = PairVocab.from_dict(meta["tokenizer"]["source"])
        tv = PairVocab.from_dict(meta["tokenizer"]["target"])
    except (UsageError, TypeError, KeyError) as e:
        raise CheckpointError(f"{where}: bad seq2seq metadata ({e}); the file is corrupt or foreign") from None
    if len(sv) != config.src_vocab or len(tv) != config.tgt_vocab:
        raise CheckpointError(f"{where}: the vocabularies do not match the model; the file is corrupt")
    extra = dict(meta.get("extra") or {})
    extra["shared"] = bool(meta["tokenizer"].get("shared"))
    return Translator(Seq2Seq.from_state_dict(config, sd), sv, tv, meta=extra)


def one_pair_batch(tr: Translator, source: str, target: str):
    """A batch of one pair (for inspection and tests)."""
    return make_batch([tr.src_vocab.encode(source)], [tr.tgt_vocab.encode(target)])


# ---------------------------------------------------------------- charlm info
def summary(path, *, keras: bool = False) -> dict:
    """{"path", "model": {"task", "layers": [{"name", "type", "output_shape", "params"}], "total_params"},
    "training": {...}} of a seq2seq model file or RUN_DIR (Keras counting: one bias per gate block)."""
    from .checkpoint import resolve_model_path
    from .seq2seq import param_shapes

    tr = load(path)
    c = tr.config
    shapes = param_shapes(c)
    H, E, D = c.hidden, c.embed, c.enc_out

    def count(prefix):
        n = 0
        for name, s in shapes.items():
            if name.startswith(prefix):
                if keras and "bias_hh" in name and c.cell != "gru":   # Keras: one bias (GRU reset_after: two)
                    continue
                n += math.prod(s)
        return n

    cell = c.cell.upper()
    enc = f"Bidirectional({cell}({H})) x {c.layers}" if c.bidirectional else f"{cell}({H}) x {c.layers}"
    layers = [
        ("source_embedding", f"Embedding({c.src_vocab}, {E})", ("S", "B", E), count("src_embed.")),
        ("encoder", enc, ("S", "B", D), count("encoder.")),
        ("bridge", "Dense(2H -> H) on [fwd; rev] final h" + (", c" if c.cell == "lstm" else "")
         if c.bidirectional else "copy of the final states", (c.layers, "B", H), count("bridge")),
        ("target_embedding", f"Embedding({c.tgt_vocab}, {E})", ("T", "B", E), count("tgt_embed.")),
        ("decoder", f"{cell}({H}) x {c.layers}", ("T", "B", H), count("decoder.")),
        ("attention", {"none": "none", "dot": "Luong dot + tanh(W_c[c;h])",
                       "general": "Luong general + tanh(W_c[c;h])"}[c.attention], ("T", "B", H),
         count("attention.") + count("combine.")),
        ("head", f"Dense({c.tgt_vocab}, softmax)", ("T", "B", c.tgt_vocab), count("head.")),
    ]
    rows = [{"name": n, "type": t, "output_shape": list(s), "params": p} for n, t, s, p in layers]
    return {"path": str(resolve_model_path(path)),
            "model": {"task": "seq2seq", "layers": rows, "total_params": sum(r["params"] for r in rows),
                      "counting": "keras" if keras else "pytorch",
                      "vocab": {"source": len(tr.src_vocab), "target": len(tr.tgt_vocab),
                                "shared": bool(tr.meta.get("shared")), "reserved": "0 PAD, 1 BOS, 2 EOS, 3 UNK"}},
            "training": {"train": tr.meta.get("train", {}), "metrics": tr.meta.get("metrics", {})}}


def format_summary(s: dict) -> str:
    m = s["model"]
    rule, bold = "_" * 86, "=" * 86
    lines = [f"seq2seq model: {s['path']}", rule,
             f" {'Layer (type)':<52}{'Output Shape':<20}{'Param #':>12}", bold]
    for r in m["layers"]:
        shape = "(" + ", ".join(map(str, r["output_shape"])) + ")"
        lines.append(f" {r['name'] + ' (' + r['type'] + ')':<52}{shape:<20}{r['params']:>12,}")
    v = m["vocab"]
    lines += [bold, f"Total params: {m['total_params']:,} ({m['counting']} counting)",
              f"Vocabularies: source {v['source']}, target {v['target']}{' (shared)' if v['shared'] else ''}; "
              f"reserved ids {v['reserved']}"]
    met = s["training"]["metrics"]
    if met:
        lines.append("Training: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in met.items()))
    return "\n".join(lines)
