"""Training, evaluation and prediction for the classifier and the tagger (``charlm classify``,
``charlm tag``), over variable-length batches (padding + lengths).

Batching: every epoch shuffles the examples, cuts them into chunks of 20 batches, sorts each
chunk by length and pads each batch to its longest member (bucketing by length inside a
shuffled chunk: little padding, still random batches). Texts longer than ``max_len``
characters are truncated to their first ``max_len`` (classify) or cut into chunks (tag).

Run directory: ``model.safetensors`` (weights; metadata: the SeqConfig with its task, the
character vocabulary, the labels, the built-in task) and ``metrics.jsonl`` (one line per
evaluation: step, train loss, val loss, accuracy, macro-F1).

Metrics: accuracy, macro-F1 (mean over labels of per-label F1), and for two labels the F1 of
the second label (the positive class: ``1`` = "a space follows" for --task spaces); the
confusion matrix has true labels as rows, predictions as columns.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import checkpoint, rundir
from .config import TrainConfig
from .errors import CheckpointError, UsageError
from .labeled import PAD, TAG_TASKS, CharVocab, apply_tags, check_labels, stratified_split
from .models.sequence import SeqConfig, SeqModel
from .optim import Optimizer
from .safefile import append_line, fresh_run

CHUNK = 20  # batches per sorted chunk


def encode(vocab: CharVocab, texts, max_len: int) -> list[np.ndarray]:
    return [vocab.encode(t[:max_len]) for t in texts]


def pad_batch(seqs, targets, task):
    """ids (T, B) int32, targets (B,) or (T, B), lengths (B,)."""
    lengths = np.array([len(s) for s in seqs], np.int64)
    T, B = int(lengths.max()), len(seqs)
    ids = np.full((T, B), PAD, np.int32)
    tg = np.zeros((T, B), np.int32) if task == "tag" else np.asarray(targets, np.int32)
    for b, s in enumerate(seqs):
        ids[:len(s), b] = s
        if task == "tag":
            tg[:len(s), b] = targets[b]
    return ids, tg, lengths


def batch_order(lengths, batch_size, rng, chunk: int = CHUNK):
    """Index arrays of the batches of one epoch (shuffled, sorted by length within chunks of
    ``chunk`` batches; chunk=1 is plain random batches padded to their longest member)."""
    perm = rng.permutation(len(lengths))
    out = []
    step = batch_size * chunk
    for c in range(0, len(perm), step):
        chunk = perm[c:c + step]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        out.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def confusion(y_true, y_pred, C) -> np.ndarray:
    m = np.zeros((C, C), np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def scores(m: np.ndarray) -> dict:
    tp = np.diag(m).astype(float)
    prec = tp / np.maximum(m.sum(0), 1)
    rec = tp / np.maximum(m.sum(1), 1)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0.0)
    out = {"accuracy": float(tp.sum() / max(m.sum(), 1)), "macro_f1": float(f1.mean())}
    if m.shape[0] == 2:
        out["f1"] = float(f1[1])
    return out


def evaluate(model: SeqModel, seqs, targets, batch_size=64) -> dict:
    """loss (mean nats per example or per character), metrics and the confusion matrix."""
    task, C = model.config.task, model.config.num_labels
    tot, n, yt, yp = 0.0, 0, [], []
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        ids, tg, lens = pad_batch([seqs[j] for j in idx], [targets[j] for j in idx], task)
        s, k, logits = model.loss(ids, tg, lens)
        tot, n = tot + s, n + k
        if task == "tag":
            m = np.arange(ids.shape[0])[:, None] < lens[None, :]
            yt.append(tg[m])
            yp.append(logits.argmax(-1)[m])
        else:
            yt.append(tg)
            yp.append((logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(-1))
    m = confusion(np.concatenate(yt), np.concatenate(yp), C)
    return {"loss": tot / max(n, 1), **scores(m), "confusion": m.tolist()}


def train(examples, config: SeqConfig | dict, *, out, train: TrainConfig | dict | None = None,
          max_len: int = 200, task_name: str | None = None, notice=None) -> dict:
    """Train on [(text, label)] (classify) or [(text, tags)] (tag); write the run dir ``out``.

    ``config`` may leave vocab_size/num_labels at 0: they come from the data. Returns the final
    metrics (validation when there is a validation set, else training) with the confusion matrix.
    """
    notice = notice or (lambda msg: None)
    tc = train if isinstance(train, TrainConfig) else TrainConfig.from_dict(dict(train or {}))
    cd = config.to_dict() if isinstance(config, SeqConfig) else dict(config)
    task = cd["task"]
    texts = [t for t, _ in examples]
    if task == "tag":
        labels = check_labels([x for _, tags in examples for x in tags], "tag")
    else:
        labels = check_labels([lab for _, lab in examples])
    lab_index = {lab: i for i, lab in enumerate(labels)}
    if task == "tag":
        targets = [np.array([lab_index[x] for x in tags[:max_len]], np.int32) for _, tags in examples]
        strat = [0] * len(examples)
    else:
        targets = [lab_index[lab] for _, lab in examples]
        strat = targets
    if tc.threads:
        from .trainsetup import set_threads

        set_threads(tc.threads)
    tr, va = stratified_split(strat, tc.val_frac, tc.seed)
    vocab = CharVocab.from_texts([texts[i] for i in tr])
    cfg = SeqConfig.from_dict({**cd, "vocab_size": vocab.size, "num_labels": len(labels)})
    seqs = encode(vocab, texts, max_len)
    model = SeqModel(cfg, seed=tc.seed, device=tc.device if tc.device != "auto" else "cpu")
    opt = Optimizer(tc.replace(lr_schedule="constant"), model)
    rng = np.random.default_rng(tc.seed + 1)
    # charlm train's rules: an empty --out, decided under the lock
    with fresh_run(out, holder=f"charlm {task} train") as out:
        return _fit(model, opt, rng, out, _Data(task, cfg, vocab, labels, seqs, targets, tr, va),
                    tc, max_len, task_name, notice)


class _Data(NamedTuple):
    task: str
    cfg: SeqConfig
    vocab: CharVocab
    labels: list
    seqs: list
    targets: list
    tr: np.ndarray
    va: np.ndarray


def _fit(model, opt, rng, out: Path, d: _Data, tc: TrainConfig, max_len, task_name, notice) -> dict:
    """The training loop of ``train``, inside the run lock."""
    task, cfg, vocab, labels, seqs, targets, tr, va = d
    metrics_path = out / rundir.METRICS
    tr_lens = [len(seqs[i]) for i in tr]
    steps_per_epoch = math.ceil(len(tr) / tc.batch_size)
    max_steps = tc.max_steps or (math.ceil(tc.max_epochs * steps_per_epoch) if tc.max_epochs else 10 * steps_per_epoch)
    step, t0, run_loss, last = 0, time.time(), [], None
    val = (([seqs[i] for i in va], [targets[i] for i in va]) if len(va) else
           ([seqs[i] for i in tr], [targets[i] for i in tr]))

    def save(final):
        checkpoint.save_model(out, model.state_dict(), model_config=cfg.to_dict(), tokenizer=vocab.to_dict(),
                              extra={"labels": labels, "task_name": task_name, "max_len": max_len, "metrics": final})

    while step < max_steps:
        for bidx in batch_order(tr_lens, tc.batch_size, rng):
            if step >= max_steps:
                break
            idx = tr[bidx]
            ids, tg, lens = pad_batch([seqs[i] for i in idx], [targets[i] for i in idx], task)
            run_loss.append(model.train_step(ids, tg, lens, rng if cfg.dropout > 0 else None))
            opt.clip()
            opt.step(tc.lr)
            step += 1
            if step % tc.eval_every == 0 or step == max_steps:
                last = evaluate(model, *val)
                row = {"step": step, "train_loss": float(np.mean(run_loss)), "val_loss": last["loss"],
                       "accuracy": last["accuracy"], "macro_f1": last["macro_f1"], "time": time.time() - t0}
                run_loss = []
                append_line(metrics_path, json.dumps(row))
                notice(f"step {step}/{max_steps}  train {row['train_loss']:.4f}  val {last['loss']:.4f}  "
                       f"acc {last['accuracy']:.4f}  macro-F1 {last['macro_f1']:.4f}")
    last = dict(last, labels=labels, split="val" if len(va) else "train", steps=step)
    save(last)
    return last


def load(run) -> tuple[SeqModel, CharVocab, list[str], dict]:
    """(model, vocab, labels, extra) of a classify/tag run directory or model file; metadata that is not
    what ``train`` writes (a damaged or foreign file) is a ``CheckpointError`` naming it, not a traceback."""
    sd, meta = checkpoint.load_model(run)
    cd = meta["model_config"]
    task = cd.get("task") if isinstance(cd, dict) else None
    if task not in ("classify", "tag"):
        use = "charlm seq2seq translate" if task == "seq2seq" else "charlm sample / charlm eval for language models"
        raise UsageError(f"{run} is not a classify or tag run (it is a {task or 'language model'}); use {use}")
    try:
        config = SeqConfig.from_dict(cd)
        vocab, labels, extra = _checked_meta(meta, config)
    except (UsageError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{checkpoint.resolve_model_path(run)}: bad {task} metadata ({e}); the file is "
                              "corrupt or foreign: retrain, or use another file") from None
    model = SeqModel(config)
    model.load_state_dict(sd)
    return model, vocab, labels, extra


def _checked_meta(meta: dict, config: SeqConfig) -> tuple[CharVocab, list[str], dict]:
    tok, extra = meta.get("tokenizer"), meta.get("extra")
    chars = tok.get("chars") if isinstance(tok, dict) else None
    if not (isinstance(chars, list) and all(isinstance(c, str) and len(c) == 1 for c in chars)
            and len(set(chars)) == len(chars) and len(chars) + 2 == config.vocab_size):
        raise ValueError(f"the vocabulary is not {config.vocab_size - 2} distinct characters")
    extra = dict(extra) if isinstance(extra, dict) else {}
    labels = extra.get("labels")
    if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)
            and len(set(labels)) == len(labels) == config.num_labels):
        raise ValueError(f"the labels are not {config.num_labels} distinct strings")
    max_len = extra.setdefault("max_len", 200)
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len {max_len!r} is not a positive whole number")
    if extra.get("task_name") not in (None, *TAG_TASKS):
        raise ValueError(f"unknown built-in task {extra.get('task_name')!r}")
    return CharVocab.from_dict(tok), labels, extra


def predict(model: SeqModel, vocab: CharVocab, labels, texts, max_len: int, batch_size: int = 64):
    """Per text: (B, C) label probabilities (classify)."""
    seqs = [vocab.encode(t[:max_len]) if t else np.array([PAD], np.int32) for t in texts]
    out = []
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i:i + batch_size]
        ids, _, lens = pad_batch(chunk, [0] * len(chunk), "classify")
        out.append(model.probs(ids, lens))
    return np.concatenate(out)


def tag_text(model: SeqModel, vocab: CharVocab, labels, text: str, max_len: int, task_name: str | None):
    """Tags of every character of ``text`` (input prepared as the task's: spaces removed / lowercased);
    returns (prepared input, tags, restored text or None)."""
    if task_name == "spaces":
        text = "".join(text.split())
    elif task_name == "case":
        text = text.lower()
    if not text:
        return text, [], "" if task_name else None
    chunks = [text[i:i + max_len] for i in range(0, len(text), max_len)]
    seqs = [vocab.encode(c) for c in chunks]
    ids, _, lens = pad_batch(seqs, [np.zeros(len(s), np.int32) for s in seqs], "tag")
    p = model.probs(ids, lens)  # (T, B, C)
    tags = []
    for b, L in enumerate(lens):
        tags.extend(labels[k] for k in p[:L, b].argmax(-1))
    restored = apply_tags(text, tags, task_name) if task_name else None
    return text, tags, restored


def confusion_png(matrix, labels, path, *, title: str | None = None) -> Path:
    """A heatmap of a confusion matrix (rows: true label, columns: predicted) as a PNG; needs matplotlib."""
    from .errors import UsageError as _UE

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise _UE("writing a PNG needs matplotlib: pip install 'charlm[plot]' (or omit -o for a text table)") from None
    m = np.asarray(matrix)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(2 + 0.6 * n, 1.6 + 0.6 * n))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
