"""Output conventions shared by every command: results on stdout, notices on stderr."""

from __future__ import annotations

import json
import os

import click

# under mpiexec only rank 0 speaks (every rank runs the same command); errors still show on any rank
_RANK = next((os.environ[v] for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK") if v in os.environ), "0")


def notice(msg: str) -> None:
    """A log line or notice for the user: always stderr, never mixed with results."""
    if _RANK == "0":
        click.echo(msg, err=True)


def emit_json(obj) -> None:
    """``--json`` output: exactly one JSON object on stdout."""
    click.echo(json.dumps(obj, ensure_ascii=False))
