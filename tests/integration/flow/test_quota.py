"""A tenant's quota of running steps holds across workers (sampled from the database);
steps past it wait throttled and all finish."""

from __future__ import annotations

import time
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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_quota_slot_freed_by_a_failure_goes_to_the_oldest_throttled_step_at_once(
    stack: Stack, client: Client
) -> None:
    """A failed attempt frees its place as a completion does, in its own transaction: with
    no beat running, four runs of a step that fails under a quota of one all end."""
    assert client.set_quota(1) == 1
    fails = {"name": "fails", "steps": [{"key": "f", "task": "t.fatal"}]}
    runs = [client.start_run(spec=fails, inputs={"seconds": 0.2}) for _ in range(4)]
    stack.start_worker(concurrency=3)  # after the starts: three claims at once, two throttled
    views = [client.wait(r, timeout=30) for r in runs]
    assert [v.status for v in views] == ["failed"] * 4
    with transaction(client.runtime.engine) as session:
        woken = session.scalar(
            select(func.count()).where(RunEvent.run_id.in_(runs), RunEvent.kind == "unthrottle")
        )
    assert woken  # a step was throttled, and a failure let it go


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_quota_slot_freed_by_a_wait_goes_to_the_oldest_throttled_step_at_once(
    stack: Stack, client: Client
) -> None:
    """A step that waits holds no worker and no place in the quota: with no beat running,
    three runs whose step waits for a signal all reach their wait under a quota of one,
    and all finish once signalled."""
    assert client.set_quota(1) == 1
    waits = {"name": "waits", "steps": [{"key": "w", "task": "t.signal"}]}
    # Each holds its place half a second before it waits: the others' claims find the
    # quota full and throttle them.
    runs = [client.start_run(spec=waits, inputs={"hold": 0.5}) for _ in range(3)]
    stack.start_worker(concurrency=3)
    deadline = time.monotonic() + 30
    while [client.get_run(r).steps[0].status for r in runs] != ["waiting"] * 3:
        assert time.monotonic() < deadline, [client.get_run(r).steps[0].status for r in runs]
        time.sleep(0.1)
    for run_id in runs:
        client.signal(run_id, "go", {"ok": True})
    views = [client.wait(r, timeout=30) for r in runs]
    assert [v.status for v in views] == ["succeeded"] * 3
    with transaction(client.runtime.engine) as session:
        woken = session.scalar(
            select(func.count()).where(RunEvent.run_id.in_(runs), RunEvent.kind == "unthrottle")
        )
    assert woken  # a step was throttled, and a wait or a completion let it go
