"""Helpers shared by the CLI tests: run a command in-process, and check that an error is clean."""

from __future__ import annotations

from charlm.cli import cli
from click.testing import CliRunner

MAX_LINES = 4


def run(*args, input=None):
    """``charlm ARGS`` through Click's CliRunner (separate stdout and stderr)."""
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


def assert_proc_error(proc, code: int, *phrases: str) -> None:
    """The same for a finished subprocess (``subprocess.run`` result, stderr as text or bytes)."""
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    for phrase in phrases:
        assert phrase in err, (phrase, err)
    assert 1 <= len(err.strip().splitlines()) <= MAX_LINES, err
