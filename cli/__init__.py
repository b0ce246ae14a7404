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


# commands that run no kernel: they skip charlm.backends.cpu.configure() (and its imports of SciPy, threadpoolctl)
LIGHT = {"vocab", "info", "plot"}


class CharlmCLIError(click.ClickException):
    """A CharlmError shown the Click way, keeping its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class CharlmGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        mod, attr = COMMANDS[name].split(":")
        cmd = getattr(importlib.import_module(f"{__name__}.{mod}"), attr)
        if name not in LIGHT and not hasattr(cmd, "_configures"):
            _configure_first(cmd)
        return cmd

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
        except BrokenPipeError:  # `charlm sample | head`: the reader has what it wanted; not an error
            _discard_stdout()
            ctx.exit(0)
        except OSError as e:  # a full disk on stdout, a path longer than PATH_MAX, ...: one line, no traceback
            if debug_enabled(ctx):
                raise
            raise CharlmCLIError(os_message(e), 1) from None
        except MemoryError:
            if debug_enabled(ctx):
                raise
            raise CharlmCLIError("out of memory: choose a smaller model, batch, --num-samples or input "
                                 "(or free some memory)", 1) from None


def _configure_first(cmd: click.Command) -> None:
    """``cmd`` calls ``charlm.backends.cpu.configure()`` (the kernels' thread settings) when it runs,
    after its flags are parsed: ``charlm train --help`` stays cheap."""
    inner = cmd.invoke

    def invoke(ctx):
        from charlm.backends import cpu

        cpu.configure()
        return inner(ctx)

    cmd.invoke, cmd._configures = invoke, True


def os_message(e: OSError) -> str:
    """One line for an OSError that escaped the library: what, on which path, and a fix."""
    import errno

    name = errno.errorcode.get(e.errno, "") if e.errno else ""
    what = (e.strerror or str(e) or type(e).__name__) + (f" ({name})" if name else "")
    where = f": {os.fsdecode(e.filename)[:200]}" if e.filename is not None else (
        " writing to stdout" if e.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT) else "")
    fix = {errno.ENOSPC: "free some disk space or write elsewhere",
           errno.ENAMETOOLONG: "use a shorter path",
           errno.EACCES: "check the permissions"}.get(e.errno, "check the path and the disk")
    return f"{what}{where}; {fix}"


class _ClosedStdout:
    """Stands in for a stdout that was closed before charlm started (``charlm sample >&-``)."""

    encoding = "utf-8"

    def write(self, data):
        raise CharlmError("stdout is closed: charlm writes its results there; redirect it to a file "
                          "(> out.txt), or to /dev/null to discard them")

    def flush(self):
        pass

    def isatty(self):
        return False


def _discard_stdout() -> None:
    """Point stdout at /dev/null so nothing more (not even the final flush) fails."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except OSError:
        pass


def _guard_stdout() -> None:
    """A closed stdout (fd 1): keep fd 1 taken by /dev/null (so no file charlm opens lands on it) and
    make any result written there an error."""
    try:
        os.fstat(1)
        if sys.stdout is not None:
            return
    except OSError:
        _discard_stdout()
    sys.stdout = _ClosedStdout()


def _flush_stdout() -> int:
    """Flush stdout before exiting; a failure (a full disk, a closed pipe) becomes one line (or exit 0)."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        return 0
    except BrokenPipeError:
        _discard_stdout()
        return 0
    except OSError as e:
        _discard_stdout()
        click.echo(f"Error: {os_message(e)}", err=True)
        return 1


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
    _guard_stdout()
    try:
        try:
            cli.main(args=argv, prog_name="charlm", standalone_mode=True)
        finally:
            failed = _flush_stdout()
    except BrokenPipeError:  # `charlm sample ... | head`
        _discard_stdout()
        sys.exit(0)
    except SystemExit as e:
        if failed and not e.code:
            sys.exit(failed)
        _abort_other_ranks(e)
        raise
    except BaseException as e:
        _abort_other_ranks(e)
        raise


def _abort_other_ranks(e: BaseException) -> None:
    """Under MPI, a rank that fails alone must not leave the others waiting."""
    dist = sys.modules.get("charlm.distributed")
    code = e.code if isinstance(e, SystemExit) else 1
    if dist is not None and dist.exit_code_needs_abort(code):
        dist.world().abort(code if isinstance(code, int) else 1)
