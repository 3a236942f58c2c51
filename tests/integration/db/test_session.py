"""Engines and transactions on the real databases."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, Float, Integer, String, bindparam, event, func, select, text
from sqlalchemy.exc import DataError, ProgrammingError

from db.models import Tenant
from db.prepared import Prepared
from db.session import make_engine, run_transaction, transaction
from tests.support.sent import recording_cursor
from worker.settings import Settings


def test_engine_is_configured_for_its_backend(
    backend: str, engine: Engine, settings: Settings
) -> None:
    if backend != "sqlite":
        assert engine.pool.size() == settings.db_pool_size  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == settings.db_max_overflow  # type: ignore[attr-defined]
        # cairn pings a pooled connection itself, only when it sat idle (see below).
        assert engine.pool._pre_ping is False
        return
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_transaction_commits_on_success(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(Tenant(name="acme"))
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 1


def test_transaction_rolls_back_on_error(engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="boom"), transaction(engine) as session:
        session.add(Tenant(name="acme"))
        session.flush()
        raise RuntimeError("boom")
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0


def test_a_forked_child_gets_its_own_connections(backend: str, engine: Engine) -> None:
    """Celery's prefork pool forks after the engine exists: the child must not share sockets."""
    # SQLite has no server pid to compare; the child must still be able to query.
    query = "SELECT 1" if backend == "sqlite" else "SELECT pg_backend_pid()"
    with engine.connect() as conn:
        parent_value = conn.execute(text(query)).scalar()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            with engine.connect() as conn:
                value = conn.execute(text(query)).scalar()
            os.write(write_fd, str(value).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    child_value = os.read(read_fd, 100).decode()
    os.waitpid(pid, 0)
    assert child_value, "the child could not query the database"
    if backend != "sqlite":
        assert child_value != str(parent_value)
    with engine.connect() as conn:  # the parent's pool still works
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_postgres_sessions_do_not_launch_parallel_workers(backend: str, engine: Engine) -> None:
    with engine.connect() as conn:
        if backend == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            return
        setting = conn.execute(text("SHOW max_parallel_workers_per_gather")).scalar()
    assert setting == "0"


def _terminate_pooled_backend(engine: Engine, admin: Engine) -> int:
    """Kill the server side of the one connection in ``engine``'s pool; its pid."""
    with engine.connect() as conn:
        pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    return pid


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_an_idle_pooled_connection_is_pinged_and_replaced_when_dead(settings: Settings) -> None:
    """A connection idle past db_pool_ping_after_s is pinged first: a dead one is
    replaced before the transaction sees it."""
    idle = settings.model_copy(update={"db_pool_ping_after_s": 0.0, "db_pool_size": 1})
    engine, admin = make_engine(idle), make_engine(settings)
    try:
        dead = _terminate_pooled_backend(engine, admin)
        with transaction(engine) as session:  # no error: the ping found it dead
            pid = session.scalar(text("SELECT pg_backend_pid()"))
        assert pid != dead
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_connection_used_a_moment_ago_is_not_pinged_and_a_dead_one_is_retried(
    settings: Settings,
) -> None:
    """Within the window no ping is sent (that round trip is per transaction); a
    connection that died meanwhile fails as a disconnect and run_transaction runs the
    work again on a fresh one."""
    recent = settings.model_copy(update={"db_pool_ping_after_s": 3600.0, "db_pool_size": 1})
    engine, admin = make_engine(recent), make_engine(settings)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        dead = _terminate_pooled_backend(engine, admin)
        statements.clear()
        pid = run_transaction(
            engine, lambda s: s.scalar(text("SELECT pg_backend_pid()")), retry_for_s=10
        )
        assert pid != dead
        # The work ran twice (the dead connection, then a fresh one) and nothing else.
        assert statements == ["SELECT pg_backend_pid()"] * 2
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("enabled", [True, False])
def test_hot_statements_are_prepared_once_per_connection_unless_turned_off(
    settings: Settings, enabled: bool
) -> None:
    sql = "SELECT count(*) FROM tenants WHERE name = :name"
    statement = Prepared(text(sql).bindparams(bindparam("name", type_=String())))
    engine = make_engine(settings.model_copy(update={"db_prepared_statements": enabled}))
    try:
        with engine.connect() as conn:
            assert [statement.execute(conn, {"name": "x"})[0].count for _ in range(3)] == [0] * 3
            prepared = conn.execute(
                text("SELECT name FROM pg_prepared_statements WHERE name = :n"),
                {"n": statement.name},
            ).all()
        assert len(prepared) == (1 if enabled else 0)
    finally:
        engine.dispose()


_DIVIDE = Prepared(
    text("SELECT 10 / :d AS q, pg_backend_pid() AS pid").bindparams(bindparam("d", type_=Integer()))
)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_prepared_statement_fails_as_sqlalchemy_would_and_a_dead_one_is_retried(
    settings: Settings,
) -> None:
    """Prepared statements run on the driver's cursor, past SQLAlchemy; their errors are
    still SQLAlchemy's: a bad statement's (the transaction rolled back, the connection
    fine), and a lost connection's (invalidated, so run_transaction runs the work again
    on a fresh one, its statement prepared there anew)."""
    recent = settings.model_copy(update={"db_pool_ping_after_s": 3600.0, "db_pool_size": 1})
    engine, admin = make_engine(recent), make_engine(settings)
    try:
        with pytest.raises(DataError, match="division by zero"):
            run_transaction(engine, lambda s: _DIVIDE.execute(s.connection(), {"d": 0}))
        first = run_transaction(engine, lambda s: _DIVIDE.execute(s.connection(), {"d": 2}))
        assert first[0].q == 5
        dead = _terminate_pooled_backend(engine, admin)
        assert dead == first[0].pid  # the statement was prepared on that connection
        again = run_transaction(
            engine, lambda s: _DIVIDE.execute(s.connection(), {"d": 5}), retry_for_s=10
        )
        assert (again[0].q, again[0][0]) == (2, 2)  # by name and by position
        assert again[0].pid != dead
    finally:
        engine.dispose()
        admin.dispose()


#: What the ``noted`` engine's connections sent, each command one round trip.
SENT: list[str] = []


@pytest.fixture
def noted(settings: Settings) -> Iterator[Engine]:
    """A PostgreSQL engine of cairn's whose connections note what they send."""
    engine = make_engine(settings.model_copy(update={"db_pool_size": 1}))
    recording = recording_cursor(SENT)
    event.listen(engine, "connect", lambda conn, _r: setattr(conn, "cursor_factory", recording))
    SENT.clear()
    yield engine
    engine.dispose()


def _txid(session: Any, marker: str) -> int:
    return int(session.scalar(text(f"SELECT txid_current() + 0 * length('{marker}')")))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_begin_rides_with_the_first_statement_and_commit_ends_the_transaction(
    noted: Engine,
) -> None:
    """One round trip less per transaction: ``BEGIN; <first statement>`` in one message,
    the rest of the transaction as before, then COMMIT; a transaction that runs nothing
    sends nothing."""
    with transaction(noted):
        pass  # the pool's first connection is made here
    SENT.clear()
    ids = run_transaction(noted, lambda s: (_txid(s, "one"), _txid(s, "two")))
    assert ids[0] == ids[1]  # one transaction
    assert [q.split(" + ")[0] for q in SENT] == [
        "BEGIN; SELECT txid_current()",
        "SELECT txid_current()",
        "COMMIT",
    ]
    SENT.clear()
    with transaction(noted):
        pass
    assert SENT == []
    # A prepared statement carries the BEGIN too (once prepared on the connection).
    for _ in range(2):
        SENT.clear()
        assert run_transaction(noted, lambda s: _DIVIDE.execute(s.connection(), {"d": 2}))
    assert [f"BEGIN; EXECUTE {_DIVIDE.name}(%s)", "COMMIT"] == SENT


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_failed_transaction_is_rolled_back_whole(noted: Engine) -> None:
    def work(session: Any) -> None:
        session.add(Tenant(name="half"))
        session.flush()
        session.scalar(text("SELECT 1 / 0"))

    with pytest.raises(DataError, match="division by zero"):
        run_transaction(noted, work)
    assert SENT[-1] == "ROLLBACK"
    with transaction(noted) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0
        assert session.scalar(text("SELECT current_setting('transaction_isolation')")) == (
            "read committed"
        )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_first_statement_refused_before_it_ran_leaves_the_transaction_to_the_next(
    noted: Engine,
) -> None:
    """PostgreSQL parses ``BEGIN; <statement>`` whole before running it: a syntax error
    began nothing, so the statement after it begins the transaction, and a rollback
    undoes it (it is not committed on its own)."""
    with noted.connect() as conn:
        conn.begin()
        with pytest.raises(ProgrammingError):
            conn.execute(text("SELEC 1"))
        conn.execute(
            text(
                "INSERT INTO tenants (id, name, created_at) VALUES (gen_random_uuid(), 'x', now())"
            )
        )
        conn.rollback()
    assert SENT[-1] == "ROLLBACK"
    assert SENT[-2].startswith("BEGIN; INSERT INTO tenants")
    with transaction(noted) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_autocommit_and_other_isolation_levels_are_left_to_the_driver(noted: Engine) -> None:
    """AUTOCOMMIT runs each statement alone; another level is psycopg2's BEGIN with it;
    back in the pool, the connection is cairn's again."""
    with noted.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        first = conn.execute(text("SELECT txid_current()")).scalar()
        second = conn.execute(text("SELECT txid_current()")).scalar()
        assert first != second
    with noted.connect().execution_options(isolation_level="SERIALIZABLE") as conn:
        level = conn.execute(text("SELECT current_setting('transaction_isolation')")).scalar()
        assert level == "serializable"
        conn.commit()
    SENT.clear()
    ids = run_transaction(noted, lambda s: (_txid(s, "one"), _txid(s, "two")))
    assert ids[0] == ids[1]
    assert SENT[0].startswith("BEGIN; ")
    assert SENT[-1] == "COMMIT"
    with transaction(noted) as session:
        level = session.scalar(text("SELECT current_setting('transaction_isolation')"))
    assert level == "read committed"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_server_side_cursor_begins_its_transaction_on_its_own(noted: Engine) -> None:
    """A streamed result's query goes inside DECLARE, where BEGIN cannot ride."""
    with transaction(noted) as session:
        rows = session.connection().execution_options(stream_results=True, max_row_buffer=2)
        got = [r[0] for r in rows.execute(text("SELECT generate_series(1, 5)"))]
    assert got == [1, 2, 3, 4, 5]
    # (psycopg2 wraps the query in DECLARE and FETCHes by itself.)
    assert SENT == ["BEGIN", "SELECT generate_series(1, 5)", "COMMIT"]


_TXID = Prepared(
    text("SELECT txid_current() + :z AS x").bindparams(bindparam("z", type_=Integer()))
)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_statement_sent_alone_commits_in_its_own_round_trip(
    settings: Settings, noted: Engine
) -> None:
    """``alone``: the statement goes without BEGIN, the server commits it as it ends (so
    it is committed before the transaction's end), and the COMMIT after it has nothing to
    send; a statement after it begins a transaction of its own. In a transaction already
    begun it runs there like any other."""
    run_transaction(noted, lambda s: _TXID.execute(s.connection(), {"z": 0}))  # prepared
    SENT.clear()
    elsewhere = make_engine(settings)

    def committed_at_once(session: Any) -> str:
        x = _TXID.execute(session.connection(), {"z": 0}, alone=True)[0].x
        with elsewhere.connect() as other:
            return str(other.scalar(text("SELECT txid_status(:x)"), {"x": x}))

    try:
        assert run_transaction(noted, committed_at_once) == "committed"
    finally:
        elsewhere.dispose()
    assert SENT[0] == f"EXECUTE {_TXID.name}(%s)"
    assert "COMMIT" not in SENT
    SENT.clear()

    def then_more(session: Any) -> tuple[int, int]:
        alone = _TXID.execute(session.connection(), {"z": 0}, alone=True)[0].x
        return alone, _txid(session, "after")

    alone, after = run_transaction(noted, then_more)
    assert alone != after  # two transactions
    assert [q.split(" + ")[0] for q in SENT] == [
        f"EXECUTE {_TXID.name}(%s)",
        "BEGIN; SELECT txid_current()",
        "COMMIT",
    ]

    def after_another(session: Any) -> tuple[int, int]:
        first = _txid(session, "first")
        return first, _TXID.execute(session.connection(), {"z": 0}, alone=True)[0].x

    first, joined = run_transaction(noted, after_another)
    assert first == joined  # in the transaction begun


_SLEEP = Prepared(
    text("SELECT 1 AS slept FROM pg_sleep(:s)").bindparams(bindparam("s", type_=Float()))
)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("alone", [True, False])
def test_a_connection_lost_during_a_statement_sent_alone_leaves_its_commit_unknown(
    settings: Settings, alone: bool
) -> None:
    """A statement sent alone may have committed when its connection broke: the
    transaction's ``verify`` reads back what it wrote. In a transaction, nothing was
    committed and the work runs again."""
    one = settings.model_copy(update={"db_pool_ping_after_s": 3600.0, "db_pool_size": 1})
    engine, admin = make_engine(one), make_engine(settings)
    tries: list[float] = []
    verified: list[bool] = []

    def work(session: Any) -> Any:
        seconds = 30.0 if not tries else 0.0
        tries.append(seconds)
        if seconds:
            threading.Timer(0.5, _terminate_pooled_backend_now, (admin, pid)).start()
        return _SLEEP.execute(session.connection(), {"s": seconds}, alone=alone)[0].slept

    def verify(_session: Any) -> str:
        verified.append(True)
        return "read back"

    try:
        run_transaction(engine, lambda s: _SLEEP.execute(s.connection(), {"s": 0}))  # prepared
        with engine.connect() as conn:
            pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        got = run_transaction(engine, work, verify=verify, retry_for_s=10)
        if alone:
            assert (got, tries, verified) == ("read back", [30.0], [True])
        else:
            assert (got, tries, verified) == (1, [30.0, 0.0], [])
    finally:
        engine.dispose()
        admin.dispose()


def _terminate_pooled_backend_now(admin: Engine, pid: int) -> None:
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
