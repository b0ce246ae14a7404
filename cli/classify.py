"""`charlm classify`: many-to-one text classifiers (train, predict, eval)."""

from __future__ import annotations

import json

import click

from charlm.errors import UsageError

from .output import notice
from .seqcommon import MODEL_OPTS, TRAIN_OPTS, options, report, split_kwargs

_RUN = click.argument("run", metavar="RUN_DIR", type=click.Path(exists=True))


@click.group("classify")
def classify():
    """Text classifiers: a label per text (LSTM/GRU/RNN, optionally bidirectional)."""


@classify.command("train")
@click.argument("data", type=click.Path(exists=True))
@options(MODEL_OPTS)
@click.option("--pool", type=click.Choice(["last", "mean"]), default="last", show_default=True,
              help="Read each text's last real step, or the mean over its steps.")
@click.option("--head", type=click.Choice(["softmax", "sigmoid"]), default="softmax", show_default=True,
              help="sigmoid: one logit for two labels (Keras's Dense(1, sigmoid)).")
@options(TRAIN_OPTS)
def train_cmd(data, pool, head, **kw):
    """Train on DATA: TSV (text<TAB>label), CSV (text,label), JSONL {"text","label"}, or a
    directory with one sub-directory per label."""
    from charlm import labeled, rundir, seqtrain

    model, train, max_len, out = split_kwargs(kw)
    rundir.refuse_inside(out, data)
    rundir.check_fresh(out, resumable=False)   # before reading DATA; decided again under the lock
    examples = labeled.read_labeled(data)
    cfg = {"task": "classify", "vocab_size": 0, "num_labels": 0, "pool": pool, "head": head, **model}
    res = seqtrain.train(examples, cfg, out=out, train=train, max_len=max_len, notice=notice)
    click.echo(report(res, res["labels"]))
    notice(f"predict with: charlm classify predict {out} TEXT")


def _batches(text, size: int = 256):
    """TEXT as one batch, or the lines of stdin (each bounded) in batches of ``size``, as they come."""
    if text is not None and text != "-":
        yield [text]
        return
    from charlm.boundedread import stdin_lines

    batch = []
    for line in stdin_lines():
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@classify.command("predict")
@_RUN
@click.argument("text", required=False)
@click.option("--top-k", type=int, default=1, show_default=True, help="Labels to show per text.")
@click.option("--json", "as_json", is_flag=True, help='One JSON line per text: {"text", "labels": [[label, p], ...]}.')
def predict_cmd(run, text, top_k, as_json):
    """Label TEXT (or each line of stdin with '-' or no TEXT): label and probability."""
    from charlm import seqtrain

    if top_k < 1:
        raise UsageError("--top-k must be >= 1")
    model, vocab, labels, extra = seqtrain.load(run)
    if model.config.task != "classify":
        raise UsageError(f"{run} is a tagger: use charlm tag {run} TEXT")
    for texts in _batches(text):
        probs = seqtrain.predict(model, vocab, labels, texts, extra.get("max_len", 200))
        for t, p in zip(texts, probs, strict=True):
            top = [(labels[k], float(p[k])) for k in p.argsort()[::-1][:top_k]]
            if as_json:
                click.echo(json.dumps({"text": t, "labels": [[lab, round(q, 6)] for lab, q in top]},
                                      ensure_ascii=False))
            else:
                click.echo("\t".join(f"{lab}\t{q:.4f}" for lab, q in top))


@classify.command("eval")
@_RUN
@click.argument("data", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics and confusion matrix as one JSON object.")
def eval_cmd(run, data, as_json):
    """Loss, accuracy, macro-F1 and the confusion matrix of RUN on DATA."""
    from charlm import labeled, seqtrain

    model, vocab, labels, extra = seqtrain.load(run)
    examples = labeled.read_labeled(data)
    index = {lab: i for i, lab in enumerate(labels)}
    for n, (_, lab) in enumerate(examples, 1):
        if lab not in index:
            raise UsageError(f"{data}: example {n} has label {lab!r}, which the model was not trained on "
                             f"(it knows {', '.join(labels)})")
    seqs = seqtrain.encode(vocab, [t for t, _ in examples], extra.get("max_len", 200))
    res = dict(seqtrain.evaluate(model, seqs, [index[lab] for _, lab in examples]), split=str(data))
    if as_json:
        click.echo(json.dumps({**res, "labels": labels}))
    else:
        click.echo(report(res, labels))
