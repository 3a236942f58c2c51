"""A tenant's quota of running steps holds across workers (sampled from the database);
steps past it wait throttled and all finish."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import RunEvent
from db.repositories import find_tenant
from db.session import transaction
from db.states import StepStatus
from tests.support.sampling import MostAtOnce
from tests.support.stack import Stack
from worker.client import Client
from worker.settings import Settings

NAP = {"name": "nap", "steps": [{"key": "nap", "task": "t.sleep"}]}


# The claim path is shared; PostgreSQL is where concurrent claims race.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_tenant_quota_of_two_running_steps_holds(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    assert client.set_quota(2) == 2
    stack.start_worker(concurrency=3)
    stack.start_worker(concurrency=3)
    stack.start_beat()
    runs = [
        client.start_run(spec=NAP, inputs={"seconds": 0.3, "trace_dir": str(trace_dir)})
        for _ in range(10)
    ]
    with MostAtOnce(client) as sampled:
        views = [client.wait(r, timeout=90) for r in runs]
    assert [v.status for v in views] == ["succeeded"] * 10
    assert 1 <= sampled.most(StepStatus.RUNNING.value) <= 2
    with transaction(client.runtime.engine) as session:
        throttled = session.scalar(
            select(func.count()).where(RunEvent.run_id.in_(runs), RunEvent.kind == "throttle")
        )
    assert throttled
    assert client.set_quota(None) is None
    assert client.quota() is None


def test_a_tenant_with_no_runs_has_no_quota_and_has_spent_nothing(stack_settings: Settings) -> None:
    with Client(stack_settings, tenant="never-seen") as fresh:
        assert fresh.quota() is None
        limits = fresh.spend_limits()
        with transaction(fresh.runtime.engine) as session:
            assert find_tenant(session, "never-seen") is None  # reading made no tenant
    assert (limits.tenant, limits.daily_limit_usd, limits.monthly_limit_usd) == (
        "never-seen",
        None,
        None,
    )
    assert (limits.spent_today_usd, limits.spent_this_month_usd) == (Decimal(0), Decimal(0))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_quota_slot_freed_by_a_completion_goes_to_the_oldest_throttled_step_at_once(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    # No beat runs: its timer (a safety net) cannot be what wakes the throttled steps.
    assert client.set_quota(1) == 1
    stack.start_worker(concurrency=3)
    runs = [
        client.start_run(spec=NAP, inputs={"seconds": 0.2, "trace_dir": str(trace_dir)})
        for _ in range(4)
    ]
    views = [client.wait(r, timeout=30) for r in runs]
    assert [v.status for v in views] == ["succeeded"] * 4
    with transaction(client.runtime.engine) as session:
        kinds = session.scalars(
            select(RunEvent.kind).where(RunEvent.run_id.in_(runs), RunEvent.kind == "unthrottle")
        ).all()
    assert len(kinds) >= 1  # a step was throttled, and a completion let it go
