"""``--threads`` for the commands that run a model (eval, score, sample); train has its own."""

from __future__ import annotations

import click

HELP = "CPU threads: 0 = all cores, fewer while other processes keep them busy; N pins N."


def _apply(ctx, param, value):
    if value is None or value == 0:
        return value           # the default: nothing to import or set
    if value < 0:
        raise click.UsageError("--threads must be >= 0 (0 = all cores)")
    from charlm.trainsetup import set_threads

    set_threads(value)
    return value


threads_option = click.option("--threads", type=int, default=0, show_default=True, metavar="N", help=HELP,
                              callback=_apply, expose_value=False)
