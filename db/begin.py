"""BEGIN sent with a transaction's first statement, not in a round trip of its own.

psycopg2 opens a transaction by sending ``BEGIN`` and waiting for its answer before the
first statement: a round trip per transaction that carries nothing (0.11 ms here, a
tenth of an inline step). On an engine this module is installed on (PostgreSQL through
psycopg2), the driver runs in autocommit mode and cairn sends ``BEGIN; <statement>`` as
one message when SQLAlchemy's transaction executes its first statement, then ``COMMIT``
or ``ROLLBACK`` itself. JDBC's PostgreSQL driver does the same. A transaction that
executes nothing costs no round trip at all.

Nothing else changes: the same statements run in the same server transaction, with the
same isolation (the server's default), and a connection lost during
COMMIT raises the same disconnect error for ``run_transaction`` to resolve. (A statement
that is its transaction's only write may go further and be sent without BEGIN at all,
committing itself: ``alone`` in ``db/prepared.py``.) Two cases
are left to the driver as before: a connection asked for another isolation level
(psycopg2 then begins the transaction with it) and a connection in AUTOCOMMIT, whose
statements run alone. A server-side cursor (``stream_results``) sends its BEGIN alone,
its query being wrapped in a DECLARE, and is declared WITH HOLD, which psycopg2 needs in
autocommit.
"""

from __future__ import annotations

from typing import Any

from psycopg2.extensions import TRANSACTION_STATUS_IDLE  # type: ignore[import-untyped]
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine.interfaces import IsolationLevel
from sqlalchemy.exc import DBAPIError


class CommitLost(Exception):
    """The connection broke while a commit was on its way: during COMMIT, or during a
    statement sent alone, which the server commits as it ends. Whether it landed is
    unknown; ``run_transaction`` reads it back (its ``verify``)."""

    def __init__(self, error: DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


def install(engine: Engine) -> None:
    """Make ``engine`` (psycopg2) send BEGIN with each transaction's first statement."""
    dialect = engine.dialect
    set_level = dialect.set_isolation_level

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.autocommit = True  # psycopg2 never sends BEGIN: cairn does

    # The dialect's own methods, not a cursor event: a connection event would put every
    # statement of the engine on SQLAlchemy's slower path for engines with events.
    execute, execute_no_params = dialect.do_execute, dialect.do_execute_no_params
    executemany = dialect.do_executemany

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        execute(cursor, _first(cursor, context) + statement, parameters, context)

    def do_execute_no_params(cursor: Any, statement: str, context: Any = None) -> None:
        execute_no_params(cursor, _first(cursor, context) + statement, context)

    def do_executemany(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        if _first(cursor, context):
            _send(cursor.connection, "BEGIN")  # each row's statement would begin again
        executemany(cursor, statement, parameters, context)

    def set_isolation_level(dbapi_conn: Any, level: IsolationLevel) -> None:
        # The server's default (SQLAlchemy resets a connection to it at check-in) is what
        # a bare BEGIN gets: cairn's mode. Another level is psycopg2's to begin with.
        if level in (dialect.default_isolation_level, "AUTOCOMMIT"):
            dbapi_conn.autocommit = True
        else:
            set_level(dbapi_conn, level)

    def do_commit(dbapi_conn: Any) -> None:
        if _in_ours(dbapi_conn):
            _send(dbapi_conn, "COMMIT")
        else:
            dbapi_conn.commit()  # nothing began (a no-op), or psycopg2's own transaction

    def do_rollback(dbapi_conn: Any) -> None:
        if _in_ours(dbapi_conn):
            _send(dbapi_conn, "ROLLBACK")
        else:
            dbapi_conn.rollback()

    # The engine's own dialect object (the pool's too): other engines are untouched.
    for name, method in (
        ("do_execute", do_execute),
        ("do_execute_no_params", do_execute_no_params),
        ("do_executemany", do_executemany),
        ("set_isolation_level", set_isolation_level),
        ("do_commit", do_commit),
        ("do_rollback", do_rollback),
    ):
        setattr(dialect, name, method)


def begin_prefix(conn: Connection, driver: Any) -> str:
    """``"BEGIN; "`` if the statement about to run on ``conn`` opens its transaction on
    an engine with :func:`install`; else ``""``.

    Whether the server is in a transaction is libpq's own record of the last answer (no
    round trip), not a flag of cairn's: a first statement refused before it ran (a
    syntax error, a value the driver cannot send) began nothing, and the next one
    begins the transaction in its place.
    """
    if not getattr(driver, "autocommit", False) or not conn.in_transaction():
        return ""  # psycopg2 begins this one (another isolation level), or no transaction
    if driver.info.transaction_status != TRANSACTION_STATUS_IDLE:
        return ""  # begun already
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return ""  # its statements run alone
    return "BEGIN; "


def _first(cursor: Any, context: Any) -> str:
    """:func:`begin_prefix` for a statement SQLAlchemy runs (``context`` names its
    connection; None for the dialect's own statements on a new connection). A
    server-side cursor's query goes inside its DECLARE, where BEGIN cannot ride: it is
    sent alone, and the cursor declared WITH HOLD, which psycopg2 needs in autocommit
    (in the transaction, an ordinary cursor; one left open at the commit keeps its rows)."""
    conn = getattr(context, "root_connection", None)
    if conn is None:
        return ""
    prefix = begin_prefix(conn, cursor.connection)
    if cursor.name is None:
        return prefix
    if prefix:
        _send(cursor.connection, "BEGIN")
    cursor.withhold = True
    return ""


def _in_ours(proxied: Any) -> bool:
    """Whether the server holds a transaction cairn began on ``proxied`` (a pooled
    connection, or the raw one before it is pooled)."""
    driver = getattr(proxied, "dbapi_connection", proxied)
    return bool(driver.autocommit) and driver.info.transaction_status != TRANSACTION_STATUS_IDLE


def _send(dbapi_conn: Any, command: str) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(command)
    finally:
        cursor.close()
