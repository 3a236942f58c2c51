"""The ``cairn`` command line.

Errors are one line with what to do and a non-zero exit code; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer

from worker import __version__
from worker.errors import CairnError
from worker.settings import get_settings

app = typer.Typer(
    name="cairn",
    help="cairn: durable workflows on Celery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["debug"] = debug


def one_line_errors(func: F) -> F:
    """Turn a CairnError into one line on stderr and exit code 1 (traceback with --debug)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CairnError as exc:
            if _state["debug"]:
                raise
            typer.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@app.command()
@one_line_errors
def version() -> None:
    """Print cairn's version."""
    typer.echo(__version__)


@app.command()
@one_line_errors
def migrate(
    revision: str = typer.Argument("head", help="Alembic revision to upgrade to."),
) -> None:
    """Create or upgrade the database schema (CAIRN_DATABASE_URL)."""
    from db import migrate as migrations

    settings = get_settings()
    migrations.upgrade(settings, revision)
    typer.echo(f"database at {settings.safe_database_url} is at {revision}")


def main() -> None:
    """Entry point of the ``cairn`` console script."""
    app()
