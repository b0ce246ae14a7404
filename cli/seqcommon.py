"""Options and printing shared by ``charlm classify`` and ``charlm tag``."""

from __future__ import annotations

import functools

import click


def model_opts(bidirectional: bool = False) -> list:
    """The model options; ``charlm tag`` reads both ways by default, ``charlm classify`` forward."""
    return [
        click.option("--cell", type=click.Choice(["rnn", "lstm", "gru"]), default="lstm", show_default=True,
                     help="Recurrent cell."),
        click.option("--layers", type=int, default=1, show_default=True, help="Stacked recurrent layers."),
        click.option("--hidden", type=int, default=64, show_default=True, help="Hidden units per direction."),
        click.option("--embed", type=int, default=32, show_default=True, help="Embedding size (0 = one-hot)."),
        click.option("--bidirectional/--unidirectional", default=bidirectional, show_default=True,
                     help="Read each text both ways (outputs concatenated)."),
        click.option("--dense", type=int, default=0, show_default=True,
                     help="A hidden Dense(relu) layer of this size before the head (0 = none)."),
        click.option("--dropout", type=float, default=0.0, show_default=True, help="Dropout between recurrent layers."),
    ]


MODEL_OPTS = model_opts()
TRAIN_OPTS = [
    click.option("--out", type=click.Path(file_okay=False), required=True, help="Run directory to write."),
    click.option("--lr", type=float, default=0.01, show_default=True, help="Adam learning rate."),
    click.option("--batch-size", type=int, default=32, show_default=True, help="Examples per batch."),
    click.option("--max-steps", type=int, default=0, help="Stop at this step (0 = use --max-epochs)."),
    click.option("--max-epochs", type=float, default=10.0, show_default=True, help="Stop after this many epochs."),
    click.option("--val-frac", type=float, default=0.1, show_default=True,
                 help="Held out for validation (stratified by label)."),
    click.option("--eval-every", type=int, default=100, show_default=True, help="Evaluate every N steps."),
    click.option("--max-len", type=int, default=200, show_default=True,
                 help="Longest text in characters (classify: truncated; tag: cut into chunks)."),
    click.option("--seed", type=int, default=1337, show_default=True, help="Seed for weights, split and order."),
    click.option("--threads", type=int, default=0, show_default=True, help="CPU threads (0 = all cores)."),
]


def options(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return functools.wraps(f)(f)
    return deco


def split_kwargs(kw):
    """(model dict, train dict, max_len, out) from the shared options."""
    model = {k: kw.pop(k) for k in ("cell", "layers", "hidden", "embed", "bidirectional", "dense", "dropout")}
    train = {k: kw.pop(k) for k in ("lr", "batch_size", "max_steps", "max_epochs", "val_frac", "eval_every", "seed",
                                    "threads")}
    return model, train, kw.pop("max_len"), kw.pop("out")


def confusion_table(m, labels) -> str:
    """The confusion matrix as a text table (rows: true label, columns: predicted)."""
    w = max([len(x) for x in labels] + [len(str(v)) for row in m for v in row] + [4])
    head = "true\\pred".ljust(w + 1) + " ".join(x.rjust(w) for x in labels)
    rows = [lab.ljust(w + 1) + " ".join(str(v).rjust(w) for v in row) for lab, row in zip(labels, m, strict=True)]
    return "\n".join([head] + rows)


def report(res: dict, labels) -> str:
    line = (f"{res['split']}: loss {res['loss']:.4f}  accuracy {res['accuracy']:.4f}  "
            f"macro-F1 {res['macro_f1']:.4f}")
    if "f1" in res:
        line += f"  F1({labels[1]}) {res['f1']:.4f}"
    return line + "\n" + confusion_table(res["confusion"], labels)
