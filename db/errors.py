"""What a database error means: a lost connection, a transaction worth running again.

One place for the classification, used by ``run_transaction``, the prepared statements'
own error path and the API's error pages.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

#: PostgreSQL SQLSTATEs that mean "the same transaction may succeed if run again".
#: Serialization failure, deadlock; a prepared statement the server no longer has (a
#: pooler's DISCARD ALL), which ``db/prepared.py`` prepares again on the next try, or
#: one it has though its message failed after the PREPARE, which the next try runs.
_RETRYABLE_PGCODES = frozenset({"40001", "40P01", "26000", "42P05"})
#: The server is shutting down, crashed, or not yet accepting connections.
_SHUTDOWN_PGCODES = frozenset({"57P01", "57P02", "57P03"})


def is_transient(exc: DBAPIError) -> bool:
    """True when the same transaction may succeed if run again from the start."""
    if is_disconnect(exc):
        return True
    code = getattr(exc.orig, "pgcode", None)
    if code in _RETRYABLE_PGCODES:
        return True
    return "database is locked" in str(exc.orig)


def is_foreign_key_violation(exc: DBAPIError) -> bool:
    """True when a row names a parent that does not exist (or no longer does)."""
    return getattr(exc.orig, "pgcode", None) == "23503" or "FOREIGN KEY constraint" in str(exc.orig)


def is_disconnect(exc: DBAPIError) -> bool:
    """True when the connection to the server was lost or refused (not a bad statement)."""
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "pgcode", None) or ""
    if code.startswith("08") or code in _SHUTDOWN_PGCODES:
        return True
    if isinstance(exc, OperationalError | InterfaceError) and code == "":
        # psycopg2 gives no SQLSTATE for a broken socket or a refused connection.
        return not isinstance(exc.orig, sqlite3.Error)
    return False


def describe(exc: BaseException) -> str:
    """The first line of a database error, for a log: no statement, no parameters."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}"
