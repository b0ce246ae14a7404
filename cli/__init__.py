"""The Click front end, installed as ``charlm.cli`` (console script ``charlm``).

Thin by design: flags -> config objects -> a library call -> results on stdout,
notices on stderr. Commands live one per module and load only when invoked, so
``charlm sample`` never pays for importing the trainer.

Errors: the library raises ``charlm.errors.CharlmError``; here it becomes a short
``Error: ...`` line on stderr with exit code 2 (usage) or 1 (runtime), and no
traceback unless ``--debug`` (or ``CHARLM_DEBUG=1``) is given.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from charlm import __version__
from charlm.errors import CharlmError

# command name -> "module:function" inside charlm.cli
COMMANDS = {
    "vocab": "vocab:vocab",
    "train": "train:train",
    "sample": "sample:sample",
    "eval": "evaluate:eval_cmd",
    "score": "evaluate:score",
    "info": "info:info",
    "inspect": "report:inspect_cmd",
    "plot": "plot:plot",
    "import": "interop:import_cmd",
    "seq2seq": "seq2seq:seq2seq",
    "classify": "classify:classify",
    "tag": "tag:tag",
}


class CharlmCLIError(click.ClickException):
    """A CharlmError shown the Click way, keeping its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class CharlmGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._available(name)]

    def _available(self, name):
        mod = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(f"{__name__}.{mod}") is not None

    def get_command(self, ctx, name):
        if name not in COMMANDS or not self._available(name):
            return None
        mod, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"{__name__}.{mod}"), attr)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharlmError as e:
            if debug_enabled(ctx):
                raise
            raise CharlmCLIError(getattr(e, "cli_message", None) or str(e), e.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled(ctx):
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)


def debug_enabled(ctx=None) -> bool:
    if os.environ.get("CHARLM_DEBUG", "") not in ("", "0"):
        return True
    ctx = ctx or click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.obj and ctx.obj.get("debug"):
            return True
        ctx = ctx.parent
    return False


@click.group(cls=CharlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="charlm")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """charlm: character-level language models (RNN, LSTM, GRU) on Numba-compiled CPU kernels.

    Train on your own text, sample from it, evaluate it.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None):
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="charlm")
    except BrokenPipeError:  # `charlm sample ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        finally:
            sys.exit(0)
    except BaseException as e:  # under MPI, a rank that fails alone must not leave the others waiting
        dist = sys.modules.get("charlm.distributed")
        code = e.code if isinstance(e, SystemExit) else 1
        if dist is not None and dist.exit_code_needs_abort(code):
            dist.world().abort(code if isinstance(code, int) else 1)
        raise
