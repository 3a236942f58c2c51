"""Engines and transactions: the only module that spells ``commit``.

``make_engine`` builds a SQLAlchemy engine from :class:`~worker.settings.Settings`:
SQLite with WAL, foreign keys and a busy timeout; PostgreSQL with a pre-pinged pool and an
optional schema. ``transaction`` is the one unit of work: it commits when the block ends
and rolls back when it raises.
"""

from __future__ import annotations

import logging
import os
import random
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from worker.errors import DatabaseUnavailable
from worker.settings import Settings

T = TypeVar("T")
log = logging.getLogger("cairn.db")
#: PostgreSQL SQLSTATEs that mean "the same transaction may succeed if run again".
_RETRYABLE_PGCODES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


def make_engine(settings: Settings) -> Engine:
    """A new engine for ``settings.database_url``, safe to use after ``fork``."""
    url = settings.db_url
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(settings)
    else:
        # cairn's statements are small OLTP reads and writes by key: launching parallel
        # workers costs ~5 ms on a 10-row read among a million rows, for nothing.
        options = ["-cmax_parallel_workers_per_gather=0"]
        if settings.db_schema:
            options.append(f"-csearch_path={settings.db_schema}")
        connect_args: dict[str, Any] = {"connect_timeout": 10, "options": " ".join(options)}
        engine = create_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_s,
            pool_pre_ping=settings.db_pool_pre_ping,
            connect_args=connect_args,
        )
    _dispose_in_forked_children(engine)
    return engine


def _sqlite_engine(settings: Settings) -> Engine:
    url = settings.db_url
    if url.database and url.database != ":memory:":
        folder = os.path.dirname(os.path.abspath(url.database))
        if not os.path.isdir(folder):
            raise DatabaseUnavailable(
                f"SQLite folder {folder!r} does not exist; create it or fix CAIRN_DATABASE_URL"
            )
    engine = create_engine(
        url,
        connect_args={"timeout": settings.sqlite_busy_timeout_s, "check_same_thread": False},
    )
    busy_ms = int(settings.sqlite_busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN is ours (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction can then
        # never fail half way with SQLITE_BUSY, it waits for busy_timeout instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _dispose_in_forked_children(engine: Engine) -> None:
    """Drop inherited pooled connections in a forked child (Celery's prefork pool).

    A connection shared by two processes corrupts both sessions; ``close=False`` leaves
    the parent's connections alone and gives the child a fresh pool.
    """
    ref = weakref.ref(engine)

    def _after_fork() -> None:
        live = ref()
        if live is not None:
            live.dispose(close=False)

    os.register_at_fork(after_in_child=_after_fork)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit at the end of the block, roll back if it raises.

    Repositories and engine verbs take the session this yields and never commit.
    """
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


def check_connection(engine: Engine, safe_url: str) -> None:
    """Raise :class:`DatabaseUnavailable` naming ``safe_url`` unless the database answers."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot reach the database at {safe_url}: {reason}. "
            "Check CAIRN_DATABASE_URL and that the server is running."
        ) from None


def run_transaction(engine: Engine, work: Callable[[Session], T], attempts: int = 5) -> T:
    """Run ``work(session)`` in one transaction, again if the database asks for it.

    A deadlock, a serialization failure or a locked SQLite file rolls the whole
    transaction back, so running it again from the start is safe. Other errors propagate.
    """
    for attempt in range(1, attempts + 1):
        try:
            with transaction(engine) as session:
                return work(session)
        except DBAPIError as exc:
            if attempt == attempts or not _is_transient(exc):
                raise
            log.info(
                "transaction conflict, running it again",
                extra={"action": "retry_transaction", "attempt": attempt},
            )
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _is_transient(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "pgcode", None)
    if code in _RETRYABLE_PGCODES:
        return True
    return "database is locked" in str(exc.orig)
