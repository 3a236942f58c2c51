"""Budgets: a run pauses at the first crossing with exactly the spent costs recorded,
resumes from its checkpoint with a raised budget, is cancelled when the raise is rejected;
a tenant's daily limit pauses every run of the tenant that crosses it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.waits.test_approvals import wait_for
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client
from worker.errors import DefinitionError

SPEND = {"name": "spender", "steps": [{"key": "spend", "task": "t.spend"}]}


def budget_request(client: Client, run_id: object) -> object:
    found = [a for a in client.list_approvals(run_id=run_id) if a.kind == "budget"]
    return found[0] if found else None


def test_run_pauses_at_its_budget_and_resumes_from_its_checkpoint(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    run_id = client.start_run(
        spec=SPEND, inputs={"rounds": 4, "trace_dir": str(trace_dir)}, budget_usd=Decimal("0.50")
    )
    request = wait_for(lambda: budget_request(client, run_id), what="the budget request")
    view = client.get_run(run_id)
    assert view.status == "paused"
    assert view.step("spend").status == "waiting"
    assert view.cost_usd == Decimal(1)  # exactly what was spent: one round
    assert view.paused is not None
    assert view.paused["reason"] == "run_budget"
    assert view.paused["approval_id"] == str(request.id)
    assert "spent $1" in view.paused["message"]
    assert request.title == "Raise the budget?"
    assert [e.kind for e in client.events(run_id)].count("pause_run") == 1

    with pytest.raises(DefinitionError, match="needs the new budget"):
        client.approve(request.id, by="finance")
    with pytest.raises(DefinitionError, match="not above"):
        client.approve(request.id, by="finance", budget_usd="0.75")
    client.approve(request.id, by="finance", budget_usd="10")
    view = client.wait(run_id, timeout=30)
    assert view.status == "succeeded"
    assert view.cost_usd == Decimal(4)
    assert view.budget_usd == Decimal(10)
    lines = trace_lines(trace_dir)
    # Resumed from its checkpoint: round 1 was not spent again.
    assert lines[0] == "spend start 1 at 0 left 0.5"
    assert lines[1].startswith("spend start 2 at 1 left 9")
    assert lines[2:] == ["spend round 2", "spend round 3", "spend round 4"]
    costs = client.costs(run_id)
    assert costs.total_usd == Decimal(4)


def test_rejecting_the_raise_cancels_the_run(stack: Stack, client: Client, trace_dir: Path) -> None:
    stack.start_worker(concurrency=1)
    run_id = client.start_run(
        spec=SPEND, inputs={"trace_dir": str(trace_dir)}, budget_usd=Decimal("2.5")
    )
    request = wait_for(lambda: budget_request(client, run_id), what="the budget request")
    assert client.get_run(run_id).cost_usd == Decimal(3)
    client.reject(request.id, by="finance", comment="too dear")
    view = client.wait(run_id, timeout=30)
    assert view.status == "cancelled"
    assert view.error["reason"] == "budget_rejected"
    assert view.step("spend").status == "cancelled"
    assert view.cost_usd == Decimal(3)


def test_tenant_daily_limit_pauses_every_run_that_crosses_it(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=2)
    limits = client.set_spend_limits(daily_usd="3")
    assert limits.daily_limit_usd == Decimal(3)
    assert limits.spent_today_usd == 0
    runs = [
        client.start_run(spec=SPEND, inputs={"rounds": 4, "trace_dir": str(trace_dir)})
        for _ in range(2)
    ]
    wait_for(
        lambda: all(client.get_run(r).status == "paused" for r in runs),
        what="both runs paused",
    )
    for run_id in runs:
        assert client.get_run(run_id).paused["reason"] == "tenant_daily"
    spent = client.spend_limits().spent_today_usd
    assert spent == sum(client.get_run(r).cost_usd for r in runs)
    # $4 crossed the limit and paused its run; the other run's next cost paused it too.
    assert spent == 5

    first = budget_request(client, runs[0])
    client.approve(first.id, by="finance", budget_usd="100")
    assert client.spend_limits().daily_limit_usd == Decimal(100)
    for run_id in runs:  # raising the tenant's limit resumes every run it paused
        assert client.wait(run_id, timeout=30).status == "succeeded"
    assert client.spend_limits().spent_today_usd == Decimal(8)
