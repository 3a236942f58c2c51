"""BEGIN sent with a transaction's first statement, not in a round trip of its own.

psycopg2 opens a transaction by sending ``BEGIN`` and waiting for its answer before the
first statement: a round trip per transaction that carries nothing (0.11 ms here, a
tenth of an inline step). On an engine this module is installed on (PostgreSQL through
psycopg2), the driver runs in autocommit mode and cairn sends ``BEGIN; <statement>`` as
one message when SQLAlchemy's transaction executes its first statement, then ``COMMIT``
or ``ROLLBACK`` itself. JDBC's PostgreSQL driver does the same. A transaction that
executes nothing costs no round trip at all.

Nothing else changes: the same statements run in the same server transaction, with the
same isolation (READ COMMITTED, the server's default), and a connection lost during
COMMIT raises the same disconnect error for ``run_transaction`` to resolve. Two cases
are left to the driver as before: a connection asked for another isolation level
(psycopg2 then begins the transaction with it) and a connection in AUTOCOMMIT, whose
statements run alone. A server-side cursor (``stream_results``) sends its BEGIN alone,
its query being wrapped in a DECLARE, and is declared WITH HOLD, which psycopg2 needs in
autocommit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine.interfaces import IsolationLevel

#: In a connection's ``info``: cairn began a transaction on it that has not ended.
_OPEN = "cairn_begun"
#: The one isolation level the server begins with by itself.
_DEFAULT_LEVEL = "READ COMMITTED"


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
        prefix = _prefix(cursor, context)
        if cursor.name is not None:
            # A server-side cursor: its query goes inside its DECLARE, so the BEGIN goes
            # on its own; and psycopg2 declares one in autocommit only WITH HOLD (in the
            # transaction begun here it is an ordinary cursor until the commit).
            if prefix:
                _send(cursor.connection, "BEGIN")
                prefix = ""
            cursor.withhold = True
        execute(cursor, prefix + statement, parameters, context)

    def do_execute_no_params(cursor: Any, statement: str, context: Any = None) -> None:
        execute_no_params(cursor, _prefix(cursor, context) + statement, context)

    def do_executemany(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        prefix = _prefix(cursor, context)
        if prefix:
            cursor.execute(prefix)  # each row's statement would begin again
        executemany(cursor, statement, parameters, context)

    def set_isolation_level(dbapi_conn: Any, level: IsolationLevel) -> None:
        # The default (SQLAlchemy resets a connection to it at check-in) is cairn's own
        # mode; another level is psycopg2's to begin transactions with, as without this.
        if level in (_DEFAULT_LEVEL, "AUTOCOMMIT"):
            dbapi_conn.autocommit = True
        else:
            set_level(dbapi_conn, level)

    def do_commit(dbapi_conn: Any) -> None:
        if _began(dbapi_conn):
            _send(dbapi_conn, "COMMIT")
        else:
            dbapi_conn.commit()  # nothing began (a no-op), or psycopg2's own transaction

    def do_rollback(dbapi_conn: Any) -> None:
        if _began(dbapi_conn):
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
    """``"BEGIN; "`` if the statement about to run on ``conn`` is its transaction's
    first on an engine with :func:`install`; else ``""`` (and nothing is changed)."""
    try:
        info = conn.connection.info
    except NotImplementedError:  # the engine's first connection, before it is pooled
        return ""
    if info.get(_OPEN) or not conn.in_transaction():
        return ""
    if not getattr(driver, "autocommit", False) or _autocommit_option(conn):
        return ""  # psycopg2 begins this one, or statements run alone
    info[_OPEN] = True
    return "BEGIN; "


def _autocommit_option(conn: Connection) -> bool:
    """Whether ``conn`` was asked to run in AUTOCOMMIT (an execution option)."""
    return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _prefix(cursor: Any, context: Any) -> str:
    """:func:`begin_prefix` for a statement SQLAlchemy runs (``context`` names its
    connection; None for the dialect's own statements on a new connection)."""
    conn = getattr(context, "root_connection", None)
    return "" if conn is None else begin_prefix(conn, cursor.connection)


def _began(proxied: Any) -> bool:
    """Whether cairn began a transaction on ``proxied`` (a pooled connection), forgetting it."""
    try:
        info = proxied.info
    except NotImplementedError:  # the engine's first connection, before it is pooled
        return False
    return bool(info.pop(_OPEN, False))


def _send(dbapi_conn: Any, command: str) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(command)
    finally:
        cursor.close()
