"""Helpers shared by the CLI robustness tests."""

from __future__ import annotations

from charlm.cli import cli
from click.testing import CliRunner

MAX_LINES = 4


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def assert_clean_error(result, code: int, *phrases: str) -> None:
    """Exit ``code``, every phrase on stderr, no traceback, a few lines at most."""
    err = result.stderr
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught exception
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in err, (phrase, err)
    assert 1 <= len(err.strip().splitlines()) <= MAX_LINES, err
