"""`charlm tag`: a label per character (restore spaces or case, or user tags)."""

from __future__ import annotations

import json

import click

from charlm.errors import UsageError

from .output import notice
from .seqcommon import TRAIN_OPTS, model_opts, options, report, split_kwargs


class TagGroup(click.Group):
    """``charlm tag train ...`` / ``charlm tag eval ...``, and ``charlm tag RUN [TEXT]`` to tag."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands:
            return "apply", self.commands["apply"], args
        return super().resolve_command(ctx, args)


@click.group("tag", cls=TagGroup)
def tag():
    """Per-character taggers: `charlm tag train`, `charlm tag eval`, and `charlm tag RUN [TEXT]`
    prints the restored text (--task spaces|case) or the tags."""


@tag.command("train")
@click.argument("data")
@click.option("--task", type=click.Choice(["spaces", "case"]), default=None,
              help="Built in: learn to restore word spacing (or capitals) from plain text DATA "
                   "(a file, a directory, or a named corpus such as docstrings). "
                   'Without it DATA is JSONL {"text": ..., "tags": [...]}.')
@options(model_opts(bidirectional=True))  # a tagger needs the characters after each one too
@options(TRAIN_OPTS)
def train_cmd(data, task, **kw):
    """Train a tagger on DATA (plain text with --task, else JSONL with one tag per character)."""
    from charlm import labeled, rundir, seqtrain

    model, train, max_len, out = split_kwargs(kw)
    rundir.refuse_inside(out, data)
    rundir.check_fresh(out, resumable=False)   # before reading DATA; decided again under the lock
    if task:
        text = labeled.read_plain(data, notice=notice)
        examples = labeled.tag_task(text, task, max_len)
    else:
        examples = labeled.read_tagged(data)
    cfg = {"task": "tag", "vocab_size": 0, "num_labels": 0, **model}
    res = seqtrain.train(examples, cfg, out=out, train=train, max_len=max_len, task_name=task, notice=notice)
    click.echo(report(res, res["labels"]))
    notice(f"tag with: charlm tag {out} TEXT")


@tag.command("eval")
@click.argument("run", metavar="RUN_DIR", type=click.Path(exists=True))
@click.argument("data")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics and confusion matrix as one JSON object.")
def eval_cmd(run, data, as_json):
    """Per-character loss, accuracy, macro-F1 (and F1 of the positive tag) of RUN on DATA."""
    from charlm import labeled, seqtrain

    model, vocab, labels, extra = seqtrain.load(run)
    task, max_len = extra.get("task_name"), extra.get("max_len", 200)
    examples = (labeled.tag_task(labeled.read_plain(data, notice=notice), task, max_len) if task
                else labeled.read_tagged(data))
    index = {lab: i for i, lab in enumerate(labels)}
    targets = []
    for n, (_, tags) in enumerate(examples, 1):
        bad = next((t for t in tags if t not in index), None)
        if bad is not None:
            raise UsageError(f"{data}: example {n} has tag {bad!r}, which the model was not trained on")
        targets.append([index[t] for t in tags[:max_len]])
    seqs = seqtrain.encode(vocab, [t for t, _ in examples], max_len)
    res = dict(seqtrain.evaluate(model, seqs, targets), split=str(data))
    click.echo(json.dumps({**res, "labels": labels}) if as_json else report(res, labels))


@tag.command("apply", hidden=True)
@click.argument("run", metavar="RUN_DIR", type=click.Path(exists=True))
@click.argument("text", required=False)
@click.option("--json", "as_json", is_flag=True, help='One JSON line per text: {"input", "tags", "text"}.')
def apply_cmd(run, text, as_json):
    """Tag TEXT (or each line of stdin): the restored text for --task runs, else the tags."""
    from charlm import seqtrain

    model, vocab, labels, extra = seqtrain.load(run)
    if model.config.task != "tag":
        raise UsageError(f"{run} is a classifier: use charlm classify predict {run} TEXT")
    from charlm.boundedread import stdin_lines

    texts = stdin_lines() if text in (None, "-") else [text]   # stdin: one line at a time, each bounded
    for t in texts:
        inp, tags, restored = seqtrain.tag_text(model, vocab, labels, t, extra.get("max_len", 200),
                                                extra.get("task_name"))
        if as_json:
            click.echo(json.dumps({"input": inp, "tags": tags, "text": restored}, ensure_ascii=False))
        else:
            click.echo(restored if restored is not None else " ".join(tags))
