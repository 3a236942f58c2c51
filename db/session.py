"""Engines and transactions: the only module that spells ``commit``.

``make_engine`` builds a SQLAlchemy engine from :class:`~worker.settings.Settings`:
SQLite with WAL, foreign keys and a busy timeout; PostgreSQL with a pre-pinged pool and an
optional schema. ``transaction`` is the one unit of work: it commits when the block ends
and rolls back when it raises.

The HTTP API is async: ``make_async_engine`` and ``run_transaction_async`` give it the same
database (asyncpg, aiosqlite) under the same retry rules, and it runs the same sync
repository and engine-verb code inside its transactions through ``run_sync``, so there is
no second copy of any query.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from db import begin, prepared
from db.errors import describe, is_disconnect, is_transient
from worker.errors import DatabaseUnavailable
from worker.settings import Settings

T = TypeVar("T")
log = logging.getLogger("cairn.db")
#: How long a transaction is retried while the database is away, unless told otherwise.
DEFAULT_RETRY_S = 30.0


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
        prepares = settings.db_prepared_statements and url.get_driver_name() == "psycopg2"
        if prepares:
            # The only statements prepared on this engine are cairn's (db/prepared.py),
            # each a seek by primary key. Left to choose, PostgreSQL kept planning the
            # completion anew at every run once the tables grew (its generic plan looked
            # dearer than a plan for the values): 1.0 ms a run instead of 0.5, measured.
            options.append("-cplan_cache_mode=force_generic_plan")
        connect_args: dict[str, Any] = {"connect_timeout": 10, "options": " ".join(options)}
        engine = create_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_s,
            connect_args=connect_args,
        )
        _ping_when_idle(engine, settings)
        if url.get_driver_name() == "psycopg2":
            begin.install(engine)  # BEGIN rides with the first statement
        if prepares:  # (another driver may prepare every statement: not forced generic)
            prepared.enable(engine)
    _dispose_in_forked_children(engine)
    return engine


def make_async_engine(settings: Settings) -> AsyncEngine:
    """An async engine on the same database as :func:`make_engine`, for the HTTP API."""
    url = settings.async_db_url
    if url.get_backend_name() == "sqlite":
        _check_sqlite_folder(settings)
        engine = create_async_engine(url, connect_args={"timeout": settings.sqlite_busy_timeout_s})
        _sqlite_pragmas(engine.sync_engine, settings)
        return engine
    # asyncpg prepares every statement; after five runs PostgreSQL may switch a prepared
    # statement to a generic plan, blind to the run id, which on a million step rows
    # scans instead of seeking (50 ms a status read, measured). Plan each with its values.
    server_settings = {
        "max_parallel_workers_per_gather": "0",
        "plan_cache_mode": "force_custom_plan",
    }
    if settings.db_schema:
        server_settings["search_path"] = settings.db_schema
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        connect_args={"timeout": 10, "server_settings": server_settings},
    )
    _ping_when_idle(engine.sync_engine, settings)
    return engine


def _ping_when_idle(engine: Engine, settings: Settings) -> None:
    """Ping a pooled connection before use when it has sat idle ``db_pool_ping_after_s``.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip more for every
    transaction, a quarter of a step's database time. A connection used a moment ago is
    alive; one that sat idle may have been cut (a server restart, a proxy's idle timeout),
    and a dead one is thrown away here and the pool tries another. A connection that
    breaks within the window fails its first statement as a disconnect, which
    :func:`run_transaction` runs again on a fresh one.
    """
    if not settings.db_pool_pre_ping:
        return
    after_s = settings.db_pool_ping_after_s
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["cairn_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("cairn_idle_since")
        if idle_since is None or time.monotonic() - idle_since < after_s:
            return  # new, or used a moment ago
        try:
            alive = dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error:
            alive = False  # whatever broke it, a fresh connection is the cure
        if not alive:
            # The pool discards this connection and checks out another (or a new one).
            raise DisconnectionError("pooled connection found dead by its ping")


def _check_sqlite_folder(settings: Settings) -> None:
    url = settings.db_url
    if url.database and url.database != ":memory:":
        folder = os.path.dirname(os.path.abspath(url.database))
        if not os.path.isdir(folder):
            raise DatabaseUnavailable(
                f"SQLite folder {folder!r} does not exist; create it or fix CAIRN_DATABASE_URL"
            )


def _sqlite_engine(settings: Settings) -> Engine:
    _check_sqlite_folder(settings)
    engine = create_engine(
        settings.db_url,
        connect_args={"timeout": settings.sqlite_busy_timeout_s, "check_same_thread": False},
    )
    _sqlite_pragmas(engine, settings)
    return engine


def _sqlite_pragmas(engine: Engine, settings: Settings) -> None:
    """WAL, foreign keys, a busy timeout, and transactions begun by cairn, not the driver."""
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


def upsert(conn: Connection, model: Any) -> Any:
    """An INSERT of ``model`` that speaks the connection's dialect's ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


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


def run_transaction(
    engine: Engine,
    work: Callable[[Session], T],
    *,
    verify: Callable[[Session], T | None] | None = None,
    retry_for_s: float = DEFAULT_RETRY_S,
) -> T:
    """Run ``work(session)`` in one transaction, again while the database asks for it.

    A deadlock, a serialization failure, a locked SQLite file or a lost connection rolls
    the whole transaction back, so running it again from the start on a fresh connection
    is safe (a statement sent alone commits itself, so nothing may be written after it
    in ``work``; a connection lost during it is a lost commit, below); tries go on with
    jittered backoff for ``retry_for_s`` seconds, then :class:`DatabaseUnavailable` is
    raised (a server fault, never the caller's).

    A connection lost during COMMIT, or during a statement that commits itself (sent
    alone, :meth:`db.prepared.Prepared.execute`), leaves the outcome unknown. ``verify``
    resolves it by reading back what ``work`` writes (its fence): a result means the
    commit landed and is returned; None means it did not, and ``work`` runs again.
    Without ``verify``, ``work`` must be safe to run twice (a guarded statement that
    re-checks its condition).
    Other errors propagate at once.
    """
    deadline = time.monotonic() + retry_for_s
    tries = 0
    ambiguous = False
    while True:
        tries += 1
        try:
            if ambiguous and verify is not None:
                with transaction(engine) as session:
                    found = verify(session)
                if found is not None:
                    _log_recovered(tries, "the commit had landed")
                    return found
            ambiguous = False
            return _commit(engine, work)
        except begin.CommitLost as lost:
            ambiguous, exc = True, lost.error
        except DBAPIError as error:
            if not is_transient(error):
                raise
            exc = error
        _wait_or_give_up(exc, tries, deadline)


def _commit(engine: Engine, work: Callable[[Session], T]) -> T:
    with Session(engine, expire_on_commit=False) as session:
        session.begin()
        result = work(session)
        try:
            session.commit()
        except DBAPIError as exc:
            if is_disconnect(exc):
                raise begin.CommitLost(exc) from exc
            raise
        return result


def _wait_or_give_up(exc: DBAPIError, tries: int, deadline: float) -> None:
    """Sleep before the next try, or raise :class:`DatabaseUnavailable` past the deadline."""
    time.sleep(_delay_or_give_up(exc, tries, deadline))


def _delay_or_give_up(exc: DBAPIError, tries: int, deadline: float) -> float:
    """Seconds to wait before the next try; :class:`DatabaseUnavailable` past the deadline."""
    reason = describe(exc)
    if time.monotonic() >= deadline:
        log.warning(
            "database still unavailable after %d tries: %s",
            tries,
            reason,
            extra={"action": "database_unavailable", "server": "database"},
        )
        raise DatabaseUnavailable(
            f"the database did not answer for {tries} tries ({reason}); the attempt waits "
            "for it to come back"
        ) from None
    if tries == 1:  # one line per outage, not per try
        log.warning(
            "database error, running the transaction again: %s",
            reason,
            extra={"action": "retry_transaction", "server": "database"},
        )
    delay = min(2.0, 0.02 * 2 ** min(tries, 10))
    return random.uniform(delay / 2, delay)


@asynccontextmanager
async def async_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """:func:`transaction` for the async side: commit at the end, roll back if it raises."""
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        yield session


async def run_transaction_async(
    engine: AsyncEngine,
    work: Callable[[Session], T],
    *,
    verify: Callable[[Session], T | None] | None = None,
    retry_for_s: float = DEFAULT_RETRY_S,
) -> T:
    """:func:`run_transaction` for the async side: ``work`` is the same sync code.

    It runs inside one async transaction through ``AsyncSession.run_sync``, with the same
    rules for what is run again, for how long, and how a lost COMMIT is resolved.
    """
    deadline = time.monotonic() + retry_for_s
    tries = 0
    ambiguous = False
    while True:
        tries += 1
        try:
            if ambiguous and verify is not None:
                async with async_transaction(engine) as session:
                    found = await session.run_sync(verify)
                if found is not None:
                    _log_recovered(tries, "the commit had landed")
                    return found
            ambiguous = False
            return await _commit_async(engine, work)
        except begin.CommitLost as lost:
            ambiguous, exc = True, lost.error
        except DBAPIError as error:
            if not is_transient(error):
                raise
            exc = error
        await asyncio.sleep(_delay_or_give_up(exc, tries, deadline))


async def _commit_async(engine: AsyncEngine, work: Callable[[Session], T]) -> T:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.begin()
        result = await session.run_sync(work)
        try:
            await session.commit()
        except DBAPIError as exc:
            if is_disconnect(exc):
                raise begin.CommitLost(exc) from exc
            raise
        return result


def _log_recovered(tries: int, how: str) -> None:
    log.info(
        "database back after %d tries; %s",
        tries,
        how,
        extra={"action": "database_recovered", "server": "database"},
    )
