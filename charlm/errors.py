"""Errors the library raises on purpose.

Every message names the problem and what to do about it. The CLI turns a
``UsageError`` into exit code 2 and any other ``CharlmError`` into exit code 1,
printing only the message (``--debug`` shows the traceback).
"""


class CharlmError(Exception):
    """A runtime problem with a clear message (exit code 1 in the CLI)."""

    exit_code = 1


class UsageError(CharlmError):
    """Bad input from the user: options, paths, text (exit code 2 in the CLI)."""

    exit_code = 2


class CheckpointError(CharlmError):
    """A checkpoint or weight file that is missing, corrupt or not ours."""

    exit_code = 1
