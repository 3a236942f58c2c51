"""The Typer app, the one-line error handling and JSON output shared by every command."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import typer
from sqlalchemy.exc import SQLAlchemyError

from worker import __version__
from worker.errors import CairnError, DefinitionError
from worker.logs import mask_secrets
from worker.settings import Settings, get_settings

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
    """Turn an expected error into one line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (CairnError, SQLAlchemyError, RecursionError) as exc:
            if _state["debug"]:
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, SQLAlchemyError):
                message = f"database error: {message} (is the schema migrated? run cairn migrate)"
            elif isinstance(exc, RecursionError):
                message = "input: is nested too deeply"
            typer.echo(f"error: {printable(message)}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def printable(text: str) -> str:
    """``text`` safe for any terminal: NUL and lone surrogates escaped."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_text(path: Path, field: str) -> str:
    """The UTF-8 text of a file the user named; one clear error otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DefinitionError(field, f"no such file: {path}") from None
    except OSError as exc:
        raise DefinitionError(field, f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            field, f"{path} is not UTF-8 text (byte {exc.start} is invalid)"
        ) from None


def settings() -> Settings:
    """The settings of this command (environment and .env); their secrets are masked in
    every log line of this process (and of the worker or beat it becomes)."""
    s = get_settings()
    mask_secrets(s.secret_values())
    return s


def _default(value: Any) -> Any:
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def print_json(value: Any) -> None:
    """Print ``value`` (dataclasses, UUIDs, Decimals, datetimes included) as JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    typer.echo(json.dumps(value, default=_default, indent=2, ensure_ascii=False))
