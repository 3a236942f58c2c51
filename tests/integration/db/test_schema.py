"""The schema holds its invariants itself: checks, unique keys, cascades, types, indexes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from db.base import Base
from db.models import CostRecord, RunEvent, Tenant, WorkflowRun, WorkflowStep
from db.session import transaction
from tests.support.factories import make_world


def test_status_columns_refuse_unknown_values(engine: Engine) -> None:
    with transaction(engine) as session:
        world = make_world(session, "acme")
    for model, row_id in ((WorkflowRun, world.run_id), (WorkflowStep, world.step_ids[0])):
        with pytest.raises(IntegrityError, match="status_valid"), transaction(engine) as session:
            session.execute(update(model).where(model.id == row_id).values(status="bogus"))


def test_idempotency_key_is_unique_per_tenant(engine: Engine) -> None:
    with transaction(engine) as session:
        make_world(session, "acme", idempotency_key="same")
        make_world(session, "globex", idempotency_key="same")  # another tenant: fine
    with pytest.raises(IntegrityError), transaction(engine) as session:
        world = make_world(session, "acme", idempotency_key="other")
        session.execute(
            update(WorkflowRun).where(WorkflowRun.id == world.run_id).values(idempotency_key="same")
        )


def test_a_cost_record_is_written_once_per_step_attempt_seq(engine: Engine) -> None:
    with transaction(engine) as session:
        world = make_world(session, "acme")
    with pytest.raises(IntegrityError), transaction(engine) as session:
        session.add(
            CostRecord(
                run_id=world.run_id,
                step_id=world.step_ids[0],
                attempt=1,
                seq=1,
                provider="openai",
                model="gpt",
                usd=Decimal(1),
            )
        )
    with transaction(engine) as session:
        costs = session.scalars(select(CostRecord)).all()
        assert [c.usd for c in costs] == [Decimal("0.00012345")]


def test_deleting_a_tenant_cascades_to_everything_it_owns(engine: Engine) -> None:
    with transaction(engine) as session:
        world = make_world(session, "acme")
        session.add(RunEvent(run_id=world.run_id, kind="start_run"))
        make_world(session, "globex")
    with transaction(engine) as session:
        session.execute(text("DELETE FROM tenants WHERE name = 'acme'"))
    with transaction(engine) as session:
        # What is left is exactly globex's world: one of each, two steps.
        expected = {"tenants": 1, "projects": 1, "workflow_definitions": 1, "workflow_runs": 1}
        expected |= {"workflow_steps": 2, "step_edges": 1, "cost_records": 1, "artifacts": 1}
        for table, count in expected.items():
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == count, table
        assert session.execute(text("SELECT count(*) FROM run_events")).scalar() == 0


def test_times_come_back_timezone_aware_in_utc(engine: Engine) -> None:
    moment = datetime(2026, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with transaction(engine) as session:
        session.add(Tenant(name="acme", created_at=moment))
    with transaction(engine) as session:
        loaded = session.scalar(select(Tenant.created_at))
    assert loaded == moment
    assert loaded is not None
    assert loaded.tzinfo is not None
    assert loaded.utcoffset() == UTC.utcoffset(None)


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), transaction(engine) as session:
        session.add(Tenant(name="acme", created_at=datetime(2026, 1, 1)))  # noqa: DTZ001
        session.flush()


def test_money_keeps_its_digits(engine: Engine) -> None:
    with transaction(engine) as session:
        world = make_world(session, "acme")
    with transaction(engine) as session:
        total = session.scalar(
            select(func.sum(CostRecord.usd)).where(CostRecord.run_id == world.run_id)
        )
    assert Decimal(total) == Decimal("0.00012345")


#: Links that a purge of the row they point at must not take with it: a fork or a child
#: run keeps its own rows when the run it came from is purged.
SET_NULL = {
    ("workflow_runs", "parent_run_id"): "SET NULL",
    ("workflow_runs", "parent_step_id"): "SET NULL",
}


def test_every_foreign_key_is_indexed(engine: Engine) -> None:
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        indexed = {next(iter(ix["column_names"])) for ix in inspector.get_indexes(table.name)} | {
            next(iter(uq["column_names"])) for uq in inspector.get_unique_constraints(table.name)
        }
        for fk in inspector.get_foreign_keys(table.name):
            assert fk["constrained_columns"][0] in indexed, (
                f"{table.name}.{fk['constrained_columns']}"
            )
            expected = SET_NULL.get((table.name, fk["constrained_columns"][0]), "CASCADE")
            assert fk["options"].get("ondelete") == expected, f"{table.name} {fk['name']}"


def test_json_columns_are_jsonb_on_postgres(backend: str, engine: Engine) -> None:
    if backend != "postgresql":
        with engine.connect() as conn:
            sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'workflow_runs'"
            ).scalar()
        assert "inputs JSON" in str(sql)
        return
    with engine.connect() as conn:
        kinds = (
            conn.execute(
                text(
                    "SELECT DISTINCT data_type FROM information_schema.columns "
                    "WHERE table_name = 'workflow_runs' AND column_name IN ('inputs', 'outputs')"
                )
            )
            .scalars()
            .all()
        )
    assert kinds == ["jsonb"]
