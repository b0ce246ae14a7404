"""`charlm eval` (loss of a model on a text or a run's split) and `charlm score` (per line)."""

from __future__ import annotations

import json

import click

from charlm.errors import UsageError

from .output import emit_json, notice
from .sample import max_bytes_option
from .threadopt import threads_option

_MODEL = click.argument("model", metavar="RUN_DIR|MODEL.safetensors", type=click.Path(exists=True))


def read_text(path: str, encoding: str, max_bytes: int | None = None) -> str:
    """The text of FILE ('-' = stdin), at most ``max_bytes`` (``charlm.boundedread.read_bytes``)."""
    import codecs

    from charlm.boundedread import read_bytes

    try:
        codecs.getincrementaldecoder(encoding)
    except LookupError:
        raise UsageError(f"unknown encoding {encoding!r}: use e.g. utf-8 or latin-1") from None
    raw = read_bytes(path, limit=max_bytes)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not valid {encoding} (byte {e.start}); pass --encoding") from None
    except (LookupError, TypeError, UnicodeError) as e:  # a codec that is not a text encoding (rot13, base64)
        raise UsageError(f"--encoding {encoding} cannot decode text ({e}): use a text encoding such as "
                         "utf-8 or latin-1") from None
    if not isinstance(text, str):
        raise UsageError(f"--encoding {encoding} is not a text encoding: use e.g. utf-8 or latin-1")
    return text


@click.command("eval")
@_MODEL
@click.option("--file", "-f", "file", default=None, metavar="FILE", help="Text to evaluate ('-' = stdin).")
@click.option("--split", type=click.Choice(["val", "test"]), default=None,
              help="Evaluate the run's own validation or test split (needs RUN_DIR/config.json), scored "
                   "as the training log scores it, so --split val matches the log's val loss.")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of --file.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="Characters the model never saw: fail, or leave them out (and say how many).")
@click.option("--json", "as_json", is_flag=True,
              help='Print exactly {"loss_nats", "bpc", "perplexity", "chars"} as one JSON object.')
@max_bytes_option
@threads_option
def eval_cmd(model, file, split, encoding, unknown, as_json, max_bytes):
    """Loss of a model on a text: nats per character, bits per character, perplexity.

    --file: every character after the first is predicted from its whole prefix (one state carried
    from the start of the text). --split: the run's own split, scored as the training log scores
    validation (--batch-size contiguous streams, each from a zero state), so the numbers agree with
    the log for the same model; one carried state gives a slightly lower loss on the same text.
    'chars' counts the characters predicted.
    """
    from charlm.loading import load
    from charlm.runsplit import run_split

    if (file is None) == (split is None):
        raise UsageError("say what to evaluate: --file FILE or --split val|test (one of them)")
    m = load(model)
    if split is not None:
        ids, train = run_split(model, split, m.tokenizer, notice)
        B, T = int(train.get("batch_size", 64)), int(train.get("seq_len", 100))
        res = m.eval_streams(ids, B, T)
        streams = min(B, max(1, (ids.size - 1) // T))
        notice(f"--split {split}: scored as the training log scores validation ({streams} streams of the "
               f"run's --batch-size {B}, each from a zero state, windows of {T})")
    else:
        res = m.eval(read_text(file, encoding, max_bytes), unknown=unknown, notice=notice)
    out = {k: res[k] for k in ("loss_nats", "bpc", "perplexity", "chars")}
    if as_json:
        emit_json(out)
        return
    click.echo(f"loss        {out['loss_nats']:.4f} nats/char")
    click.echo(f"bpc         {out['bpc']:.4f}")
    click.echo(f"perplexity  {out['perplexity']:.4f}")
    click.echo(f"chars       {out['chars']}")


@click.command("score")
@_MODEL
@click.argument("file", metavar="FILE")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of FILE.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="Characters the model never saw: fail, or leave them out.")
@max_bytes_option
@threads_option
def score(model, file, encoding, unknown, max_bytes):
    """Score each line of FILE ('-' = stdin) on its own: one JSON object per line.

    Fields: line (1-based), chars (characters predicted), loss_nats and bpc (null when nothing is
    predicted). Each line starts from a fresh state with a newline as context.
    """
    from charlm.loading import load

    m = load(model)
    lines = read_text(file, encoding, max_bytes).splitlines()
    with m.model.frozen():  # no weight changes while the lines are scored: the cells pack them once
        for row in m.score_lines(lines, unknown=unknown):
            click.echo(json.dumps(row, ensure_ascii=False))
