"""`charlm plot`: a run's training and validation bits per character, as a PNG or in the terminal."""

from __future__ import annotations

import click

from .output import notice


@click.command("plot")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(exists=True))
@click.option("-o", "--out", "out", default=None, metavar="FILE.png",
              help="Write a PNG with two panels (against step, against wall time); needs matplotlib "
                   "(pip install 'charlm[plot]'). Without it, a text chart is printed.")
@click.option("--x", "x", type=click.Choice(["step", "time"]), default="step", show_default=True,
              help="Text chart: plot against optimizer step or training wall time.")
@click.option("--width", type=click.IntRange(min=10, max=500), default=60, show_default=True,
              help="Text chart width in characters.")
@click.option("--height", type=click.IntRange(min=4, max=200), default=15, show_default=True,
              help="Text chart height in lines.")
@click.option("--title", default=None, help="PNG title (default: the run directory's name).")
@click.option("--attention-map", "attention_map", default=None, metavar="SOURCE",
              help="seq2seq runs: the attention weights for translating SOURCE (a heatmap with -o, else text).")
@click.option("--target", default=None, help="--attention-map: the target to attend with (default: the model's "
                                             "greedy translation).")
@click.option("--confusion", is_flag=True,
              help="classify/tag runs: the final confusion matrix (a heatmap with -o, else a text table).")
def plot(run_dir, out, x, width, height, title, attention_map, target, confusion):
    """Plot the learning curves in RUN_DIR/metrics.jsonl: train and validation bits per character.

    With --attention-map SOURCE (a seq2seq run), plot its attention over SOURCE instead.
    """
    from charlm.plotting import load_curves, save_png, terminal_chart

    if attention_map is not None:
        return _attention(run_dir, out, attention_map, target, title)
    if confusion:
        return _confusion(run_dir, out, title)
    if out:
        from charlm.rundir import check_output_path

        check_output_path(out, run_dir)   # never replace a file of the run (e.g. -o RUN/metrics.jsonl)
    curves = load_curves(run_dir)
    if out:
        path = save_png(curves, out, title=title)
        notice(f"wrote {path}")
    else:
        click.echo(terminal_chart(curves, x=x, width=width, height=height))


def _attention(run_dir, out, source, target, title):
    from charlm import attention_map as amap
    from charlm.errors import UsageError
    from charlm.seq2seq_run import load

    tr = load(run_dir)
    if tr.config.attention == "none":
        raise UsageError(f"{run_dir} was trained with --attention none: it has no attention to plot")
    weights, source, target = tr.attention_map(source, target)
    if out:
        notice(f"wrote {amap.save_png(weights, source, target, out, title=title)}")
    else:
        click.echo(amap.text_heatmap(weights, source, target))


def _confusion(run_dir, out, title):
    from charlm import seqtrain
    from charlm.errors import UsageError

    from .seqcommon import confusion_table

    _, _, labels, extra = seqtrain.load(run_dir)
    m = (extra.get("metrics") or {}).get("confusion")
    if m is None:
        raise UsageError(f"{run_dir} keeps no confusion matrix: use charlm classify eval {run_dir} DATA")
    if out:
        from charlm.rundir import check_output_path

        check_output_path(out, run_dir)
        notice(f"wrote {seqtrain.confusion_png(m, labels, out, title=title)}")
    else:
        click.echo(confusion_table(m, labels))
