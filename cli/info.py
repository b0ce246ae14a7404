"""`charlm info`: the layers of a model, their output shapes and parameter counts, and how it was trained."""

from __future__ import annotations

import click

from .output import emit_json


@click.command("info")
@click.argument("model", metavar="RUN_DIR|MODEL.safetensors", type=click.Path(exists=True))
@click.option("--keras", is_flag=True,
              help="Count parameters as Keras does (one bias per gate block) instead of as PyTorch does.")
@click.option("--reset-after/--no-reset-after", default=True, show_default=True,
              help="With --keras: count GRU layers as Keras's reset_after=True (two biases) or False (one).")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object: {"path", "model": {"layers", "total_params", ...}, "training": {...}}.')
@click.option("--full", is_flag=True,
              help="Show metadata strings and lists in full (by default huge ones are cut, saying how much).")
def info(model, keras, reset_after, as_json, full):
    """Show a model's layers (output shape, parameters) and its training summary.

    Shapes are time-major: (seq, batch, features). The training summary comes from the model
    file's metadata and, for a RUN_DIR, its metrics.jsonl.
    """
    from charlm.inspect import MAX_SHOWN, MAX_STRING, elide, format_summary, summarize

    if _is_seq2seq(model):
        from charlm.seq2seq_run import format_summary
        from charlm.seq2seq_run import summary as summarize
        s = summarize(model, keras=keras)
    else:
        s = summarize(model, keras=keras, reset_after=reset_after)
    if not full:
        s = elide(s, MAX_STRING if as_json else MAX_SHOWN)   # multi-MB metadata is never printed whole
    if as_json:
        emit_json(s)
    else:
        click.echo(format_summary(s))


def _is_seq2seq(path) -> bool:
    from charlm.checkpoint import load_model
    from charlm.errors import CharlmError
    from charlm.seq2seq_run import is_seq2seq

    try:
        return is_seq2seq(load_model(path)[1])
    except CharlmError:
        return False   # summarize reports the problem
