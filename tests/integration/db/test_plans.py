"""The hot path's prepared statements keep index plans on a database that starts empty."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db import migrate
from db.prepared import Prepared
from db.session import make_engine
from tests.support import servers
from tests.support.databases import make_settings
from worker.machine import claim_pg, complete_pg, ending, start_pg

SCRATCH_DB = os.environ.get("CAIRN_TEST_PG_DB", "cairn_test") + "_plans"

HOT_PATH = {
    "claim": claim_pg.STATEMENT,
    "complete": complete_pg.STATEMENT,
    "finish": ending._FINISH_PG,
    "start": start_pg.STATEMENT,
}


@pytest.fixture
def empty_engine(tmp_path: Path) -> Iterator[Engine]:
    """The worker's engine on a new, migrated, never analyzed PostgreSQL database."""
    url = servers.recreate_pg_database(SCRATCH_DB)
    settings = make_settings(url, tmp_path)
    migrate.upgrade(settings)
    engine = make_engine(settings)
    yield engine
    engine.dispose()
    servers.drop_pg_database(SCRATCH_DB)


def _cached_plan(engine: Engine, statement: Prepared) -> str:
    """The plan the statement runs with on a connection, once prepared there."""
    with engine.connect() as conn:
        conn.exec_driver_sql(statement.prepare_sql)
        nulls = ", ".join("NULL" for _ in statement.order)
        # force_generic_plan (session.py): EXPLAIN shows the plan kept at PREPARE,
        # planned now under the default settings only if it had not been.
        plan = conn.exec_driver_sql(f"EXPLAIN EXECUTE {statement.name}({nulls})").scalars()
        text = "\n".join(plan)
        conn.rollback()
    return text


@pytest.mark.parametrize("name", sorted(HOT_PATH))
def test_a_statement_prepared_on_empty_tables_looks_rows_up_by_index(
    empty_engine: Engine, name: str
) -> None:
    """Planned against empty tables, a generic plan would scan every step at every claim
    and completion for the life of the connection (a chain got slower link by link)."""
    plan = _cached_plan(empty_engine, HOT_PATH[name])
    assert "Seq Scan" not in plan, plan
    assert "Hash Join" not in plan, plan
    assert "Merge Join" not in plan, plan


def test_without_the_plan_settings_the_same_statement_would_scan(empty_engine: Engine) -> None:
    """The control: what the statements are planned as when left to choose."""
    statement = complete_pg.STATEMENT
    with empty_engine.connect() as conn:
        conn.exec_driver_sql(statement.declare_sql)
        nulls = ", ".join("NULL" for _ in statement.order)
        plan = "\n".join(
            conn.exec_driver_sql(f"EXPLAIN EXECUTE {statement.name}({nulls})").scalars()
        )
        conn.rollback()
    assert "Seq Scan on workflow_steps" in plan
