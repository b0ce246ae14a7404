"""Errors the library raises on purpose.

Every message names the problem and what to do about it. The CLI turns a
``UsageError`` into exit code 2 and any other ``CharlmError`` into exit code 1,
printing only the message (``--debug`` shows the traceback); a ``UsageError``
may carry the message in the CLI's wording as well (``cli_message``).
"""


class CharlmError(Exception):
    """A runtime problem with a clear message (exit code 1 in the CLI)."""

    exit_code = 1


class UsageError(CharlmError):
    """Bad input from the user: options, paths, text (exit code 2 in the CLI).

    The message speaks the library's language (``unknown="skip"``); ``cli``, when given, is the
    same message in the command line's words (``--unknown skip``), which the CLI shows instead.
    """

    exit_code = 2

    def __init__(self, message: str = "", *, cli: str | None = None):
        super().__init__(message)
        self.cli_message = cli


class CheckpointError(CharlmError):
    """A checkpoint or weight file that is missing, corrupt or not ours."""

    exit_code = 1


class UnknownSymbolsError(UsageError):
    """Text holds symbols that a tokenizer does not know (the message lists them)."""
