"""What a test's engine sends to PostgreSQL: each message, one round trip."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2.extensions
from sqlalchemy import Engine, event


def recording_cursor(statements: list[str]) -> type[psycopg2.extensions.cursor]:
    """A psycopg2 cursor class that appends each command it sends to ``statements``."""

    class Recording(psycopg2.extensions.cursor):  # type: ignore[misc]
        def execute(self, query: Any, args: Any = None) -> Any:
            statements.append(query if isinstance(query, str) else query.decode())
            return super().execute(query, args)

    return Recording


@contextmanager
def recorded(engine: Engine) -> Iterator[list[str]]:
    """The commands ``engine``'s connections send while in the block (cairn runs EXECUTE
    on the driver's own cursor, past SQLAlchemy's events, so the driver's cursor notes
    them)."""
    statements: list[str] = []
    recording = recording_cursor(statements)

    def record(driver: Any, *_: Any) -> None:
        driver.cursor_factory = recording

    def stop(driver: Any, *_: Any) -> None:
        driver.cursor_factory = None

    event.listen(engine, "checkout", record)
    event.listen(engine, "checkin", stop)
    try:
        yield statements
    finally:
        event.remove(engine, "checkout", record)
        event.remove(engine, "checkin", stop)
