"""`charlm inspect`: a self-contained HTML report (and/or JSON) of what a model sees in a text."""

from __future__ import annotations

import json

import click

from charlm.errors import UsageError
from charlm.report import MAX_CHARS_DEFAULT, MAX_CHARS_LIMIT, TOP_K

from .evaluate import read_text
from .output import notice


@click.command("inspect")
@click.argument("model", metavar="RUN_DIR|MODEL.safetensors", type=click.Path(exists=True))
@click.argument("file", metavar="[FILE|-]", required=False)
@click.option("-o", "--output", metavar="REPORT.html", default=None, type=click.Path(dir_okay=False),
              help="Write the HTML report here (one file: inline CSS/JS, opens from disk, no network).")
@click.option("--json", "json_path", metavar="PATH", default=None, type=click.Path(dir_okay=False, allow_dash=True),
              help="Write the report's data as JSON here ('-' = stdout); schema in charlm/report.py.")
@click.option("--max-chars", type=int, default=None, metavar="N",
              help=f"Inspect the first N characters [default: {MAX_CHARS_DEFAULT:,}; at most {MAX_CHARS_LIMIT:,}].")
@click.option("--top-k", type=click.IntRange(1, 20), default=TOP_K, show_default=True,
              help="Predictions listed per character.")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of FILE.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="Characters the model never saw: fail, or leave them out (and say how many).")
def inspect_cmd(model, file, output, json_path, max_chars, top_k, encoding, unknown):
    """Colour a text by the model's surprisal and by any unit's state, in one HTML page.

    FILE ('-' = stdin) is the text; without it, the run's validation split. The page shows the
    text coloured by surprisal (hover: top-k predictions), a neuron browser with the units most
    correlated with text features (quotes, bracket depth, line position, indentation, newlines),
    gate saturation (LSTM/GRU), the training curves and the `charlm info` summary.
    """
    from charlm.report import inspect_model, to_jsonable
    from charlm.report_html import write

    if output is None and json_path is None:
        raise UsageError("say where the report goes: -o REPORT.html and/or --json PATH")
    text = None if file is None else read_text(file, encoding)
    data = inspect_model(model, text, max_chars=max_chars, unknown=unknown, top_k=top_k, notice=notice)
    if output is not None:
        size = write(data, output)
        notice(f"wrote {output} ({size / 1e6:.2f} MB, {len(data['tokens']):,} characters, "
               f"{data['bpc']:.4f} bits/char)" if data["bpc"] is not None else f"wrote {output}")
    if json_path is not None:
        blob = json.dumps(to_jsonable(data), ensure_ascii=False, allow_nan=False)
        if json_path == "-":
            click.echo(blob)
        else:
            from charlm.safefile import atomic_write_text

            atomic_write_text(json_path, blob + "\n")
            notice(f"wrote {json_path}")
