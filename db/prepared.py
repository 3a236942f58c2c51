"""Server-side prepared statements for the hot path on PostgreSQL.

psycopg2 sends every statement as text, so PostgreSQL parses and plans it each time: for
the claim's and the completion's statements of data-modifying CTEs, planning took as long
as running them (about 0.3 ms each, measured with EXPLAIN ANALYZE). A :class:`Prepared`
statement is prepared once per database connection, on its first use there, and then run
by ``EXECUTE``; PostgreSQL keeps its plan (a generic one after five runs, as it chooses:
every one of these statements looks rows up by primary key or by an indexed id).

Prepared statements live in the database session. Behind a pooler that hands a session's
statements to other clients (PgBouncer in transaction mode before 1.21), turn them off
with ``CAIRN_DB_PREPARED_STATEMENTS=false``: the statement is then sent as text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, TextClause, event, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import BindParameter

_ENABLED = "cairn_prepare"
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
        self.prepare_sql = f"PREPARE {self.name} ({types}) AS {positional}"
        self.statement = statement
        self.execute_statement = _execute_form(self.name, order, statement)

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> CursorResult[Any]:
        """Run the statement on ``conn``: prepared there first if it is not yet; as text
        on a connection whose engine does not prepare (see :func:`enable`)."""
        if not conn.info.get(_ENABLED):
            return conn.execute(self.statement, params)
        done: set[str] = conn.info.setdefault("cairn_prepared", set())
        if self.name not in done:
            # Once per connection; PREPARE outlives a rollback of its transaction.
            conn.exec_driver_sql(self.prepare_sql)
            done.add(self.name)
        return conn.execute(self.execute_statement, params)


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
