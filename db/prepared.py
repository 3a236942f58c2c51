"""Server-side prepared statements for the hot path on PostgreSQL.

psycopg2 sends every statement as text, so PostgreSQL parses and plans it each time: for
the claim's and the completion's statements of data-modifying CTEs, planning took as long
as running them (about 0.3 ms each, measured with EXPLAIN ANALYZE). A :class:`Prepared`
statement is prepared once per database connection, on its first use there, and then run
by ``EXECUTE`` with its generic plan (``plan_cache_mode``, set on the engine's connections
in ``session.py``: every one of these statements looks rows up by primary key or by an
indexed id, and left to choose PostgreSQL kept planning some of them anew at each run).

Prepared statements live in the database session. Behind a pooler that hands a session's
statements to other clients (PgBouncer in transaction mode before 1.21), turn them off
with ``CAIRN_DB_PREPARED_STATEMENTS=false``: the statement is then sent as text.
"""

from __future__ import annotations

import hashlib
import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, TextClause, event, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import BindParameter

from db.begin import CommitLost, begin_prefix
from db.errors import is_disconnect

_ENABLED = "cairn_prepare"
#: The names prepared on a connection (in its ``info``).
_DONE = "cairn_prepared"
#: PostgreSQL's "prepared statement does not exist".
_NO_SUCH_STATEMENT = "26000"
#: PostgreSQL's "prepared statement already exists".
_ALREADY_PREPARED = "42P05"
#: The planner settings a hot-path statement's plan is made under. Every one of them
#: looks rows up by primary key or an indexed id, a few rows at a time; but a connection
#: opened on a new database plans against empty tables, where a sequential scan is the
#: cheapest, and a generic plan made then is kept as the tables grow (until an ANALYZE
#: invalidates it, and never where autovacuum is off): a chain of 1,000 steps scanned
#: every step of the table at every claim and completion.
_PLAN_BY_INDEX = "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off"
_PLAN_FREELY = "RESET enable_seqscan; RESET enable_hashjoin; RESET enable_mergejoin"
#: ``:name`` binds, not ``::type`` casts.
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Prepared:
    """One textual statement, run as a prepared statement on PostgreSQL.

    ``statement`` is ``text(sql)`` with a typed ``bindparam`` for every ``:name`` (and
    ``.columns`` for the result, if it needs types): the same types convert values in
    both forms (UUIDs, JSON, UTC datetimes), and they are declared in PREPARE, so no
    parameter's type is left for the server to guess.
    """

    def __init__(self, statement: Any) -> None:
        element: TextClause = getattr(statement, "element", statement)
        sql = element.text
        if "%" in sql:
            raise ValueError("a prepared statement's SQL may not contain '%'")
        order: list[str] = []
        for name in _BIND.findall(sql):
            if name not in order:
                order.append(name)
        binds = element._bindparams
        untyped = sorted(n for n in order if n not in binds or binds[n].type._isnull)
        if untyped:
            raise ValueError(f"no type for the binds {untyped}: give each a typed bindparam")
        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        positional = _BIND.sub(lambda m: f"${order.index(m.group(1)) + 1}", sql)
        digest = hashlib.sha1(positional.encode(), usedforsecurity=False).hexdigest()[:16]
        self.name = f"cairn_{digest}"
        types = ", ".join(binds[n].type.compile(dialect=dialect) for n in order)
        #: The PREPARE alone.
        self.declare_sql = f"PREPARE {self.name} ({types}) AS {positional}"
        nulls = ", ".join("NULL" for _ in order)
        #: What runs once per connection: the PREPARE, and its generic plan made under
        #: ``_PLAN_BY_INDEX`` (EXPLAIN EXECUTE makes and caches it), then kept.
        self.prepare_sql = (
            f"{_PLAN_BY_INDEX}; {self.declare_sql}; "
            f"EXPLAIN EXECUTE {self.name}{f'({nulls})' if order else ''}; {_PLAN_FREELY}"
        )
        self.statement = statement
        self.execute_statement = _execute_form(self.name, order, statement)
        self.order = order
        self.binds = binds
        #: What the driver runs: ``EXECUTE name(%s, ...)``, the values in ``order``.
        self.driver_sql = f"EXECUTE {self.name}({', '.join('%s' for _ in order)})"
        self.result_types: dict[str, Any] = (
            {c.name: c.type for c in statement.selected_columns} if element is not statement else {}
        )
        self._binds_for: dict[Dialect, list[Callable[[Any], Any] | None]] = {}
        self._result_shape: tuple[Any, list[Callable[[Any], Any] | None]] | None = None

    def execute(
        self, conn: Connection, params: Mapping[str, Any], *, alone: bool = False
    ) -> Sequence[Any]:
        """Run the statement on ``conn`` and return its rows (columns by name and by
        position): prepared there first if it is not yet; as text on a connection whose
        engine does not prepare (see :func:`enable`).

        ``alone``: when the statement would open its transaction, it is sent without
        BEGIN, so the server commits it as it ends and the commit rides in the same
        round trip (the transaction's COMMIT then has nothing to send). The caller
        promises the statement is then all of the transaction's writes: one that wrote
        must need no other statement with it, and what runs after it runs in a new
        transaction. In a transaction already begun it runs there like any other. A
        connection lost during it raises :class:`db.begin.CommitLost`.
        """
        if not conn.info.get(_ENABLED):
            return conn.execute(self.statement, params).all()
        done: set[str] = conn.info.setdefault(_DONE, set())
        return self._run(conn, params, alone, done)

    def _run(
        self, conn: Connection, params: Mapping[str, Any], alone: bool, done: set[str]
    ) -> list[Any]:
        """``EXECUTE`` on the driver's own cursor, in the connection's transaction.

        SQLAlchemy's execution path (cache key, parameter and result bookkeeping) cost
        a fifth of an inline step; this one converts each value with the same types
        (``self.binds``, the ``.columns`` of the statement) and turns a driver error into
        SQLAlchemy's, invalidating a connection that broke, as ``Connection.execute``
        does, so ``run_transaction`` sees the same errors either way.
        """
        dialect = conn.dialect
        driver = conn.connection.dbapi_connection
        assert driver is not None
        processors = self._bind_processors(dialect)
        args = tuple(
            value if process is None else process(value)
            for value, process in zip((params[n] for n in self.order), processors, strict=True)
        )
        prefix = begin_prefix(conn, driver)
        committing = False  # the EXECUTE that commits itself is on its way
        cursor = None
        try:
            cursor = driver.cursor()
            try:
                if self.name not in done:
                    # Once per connection: PREPARE, and the plan, outlive a rollback.
                    # Before BEGIN, it opens no transaction (one sent alone stays so).
                    cursor.execute(self.prepare_sql)
                    done.add(self.name)
                committing = alone and bool(prefix)
                cursor.execute(("" if committing else prefix) + self.driver_sql, args)
                rows = cursor.fetchall() if cursor.description else []
                shape = self._shape(dialect, cursor.description) if rows else None
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            code = getattr(exc, "pgcode", None)
            if code == _NO_SUCH_STATEMENT:
                # The server forgot it (a pooler's DISCARD ALL): prepared again next time.
                conn.info.get(_DONE, set()).discard(self.name)
            elif code == _ALREADY_PREPARED:
                # PREPARE ran but what followed it in its message failed: it is there.
                conn.info.get(_DONE, set()).add(self.name)
            broken = dialect.is_disconnect(exc, driver, cursor)
            if broken and not conn.invalidated:
                # As SQLAlchemy does: the connections opened before this one broke are
                # replaced at their next checkout, then this one.
                conn.engine.pool._invalidate(conn.connection, exc)
                conn.invalidate(exc)
            error = DBAPIError.instance(
                self.driver_sql,
                args,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=broken,
                dialect=dialect,
            )
            if committing and isinstance(error, DBAPIError) and is_disconnect(error):
                raise CommitLost(error) from error
            raise error from exc
        if shape is None:
            return []
        row, results = shape
        if not results:
            return [row._make(r) for r in rows]
        return [
            row._make(
                value if process is None else process(value)
                for value, process in zip(r, results, strict=True)
            )
            for r in rows
        ]

    def _bind_processors(self, dialect: Dialect) -> list[Callable[[Any], Any] | None]:
        found = self._binds_for.get(dialect)
        if found is None:
            found = [
                self.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in self.order
            ]
            self._binds_for[dialect] = found
        return found

    def _shape(
        self, dialect: Dialect, description: Any
    ) -> tuple[Any, list[Callable[[Any], Any] | None]]:
        """The row type of the result and each column's converter, made at the first
        result (a statement's columns and their driver types do not change)."""
        if self._result_shape is None:
            names = [d[0] for d in description]
            types = self.result_types
            results = [
                types[name].dialect_impl(dialect).result_processor(dialect, d[1])
                if name in types
                else None
                for name, d in zip(names, description, strict=True)
            ]
            row = namedtuple("Row", names)  # type: ignore[misc]
            self._result_shape = (row, results if any(results) else [])
        return self._result_shape


def sends_alone(conn: Connection) -> bool:
    """Whether a statement run now on ``conn`` with ``alone=True`` would commit itself:
    the engine prepares statements and no transaction has begun on the server."""
    if not conn.info.get(_ENABLED):
        return False
    return bool(begin_prefix(conn, conn.connection.dbapi_connection))


def enable(engine: Engine) -> None:
    """Let :class:`Prepared` statements be prepared on ``engine``'s connections (the
    worker's psycopg2 engine; others run them as text)."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info[_ENABLED] = True


def _execute_form(name: str, order: list[str], statement: Any) -> Any:
    """``EXECUTE name(:a, :b, ...)`` with the binds' and result columns' types of
    ``statement`` (a textual statement, or one with ``.columns``)."""
    element: TextClause = getattr(statement, "element", statement)
    binds: dict[str, BindParameter[Any]] = dict(element._bindparams)
    executed = text(f"EXECUTE {name}({', '.join(':' + n for n in order)})").bindparams(
        *(binds[n] for n in order)
    )
    if element is statement:
        return executed
    # By name, as the statement's own ``.columns(name=type)`` matched them.
    return executed.columns(**{c.name: c.type for c in statement.selected_columns})
