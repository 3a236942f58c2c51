"""The ``cairn`` command line.

Errors are one line with what to do and a non-zero exit code; ``--debug`` shows the
traceback. Every read command takes ``--json``.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from worker.cli import (  # noqa: F401
    apikeys,
    approvals,
    artifacts,
    definitions,
    processes,
    runs,
    schedules,
)
from worker.cli.base import app, printable


def main() -> None:
    """Entry point of the ``cairn`` console script.

    A bad option or argument is one line and exit code 2, like every other refusal,
    instead of a framed usage block.
    """
    try:
        code = app(standalone_mode=False)
    except TyperException as exc:  # click's usage errors, as Typer ships them
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", 2))
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        typer.echo(f"error: {printable(exc.format_message())}{where}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
