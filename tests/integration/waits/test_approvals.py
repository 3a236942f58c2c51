"""Approvals with real workers: the waiting step frees its worker, resumes once decided
(also after every worker and beat was killed), and rejection, expiry and double decisions
behave as documented."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db.models import StepWait
from db.session import transaction
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client
from worker.errors import AlreadyDecided, DefinitionError

APPROVE = {
    "name": "gated",
    "steps": [
        {"key": "ask", "task": "t.approval"},
        {"key": "after", "task": "t.item", "after": ["ask"]},
    ],
}


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def pending(client: Client, run_id: Any) -> Any:
    found = client.list_approvals(run_id=run_id)
    return found[0] if found else None


def test_waiting_step_frees_its_worker_and_resumes_when_approved(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    client.register_definition(APPROVE)
    run_id = client.start_run("gated", inputs={"trace_dir": str(trace_dir)})
    request = wait_for(lambda: pending(client, run_id), what="the approval request")
    assert request.title == "Ship it?"
    assert request.details == {"why": "a test"}
    assert request.requested_by == "step:ask"
    assert request.step_key == "ask"
    assert client.get_run(run_id).step("ask").status == "waiting"

    # The only worker process is free: another run's steps execute meanwhile.
    other = client.start_run(spec={"name": "free", "steps": [{"key": "a", "task": "t.item"}]})
    assert client.wait(other, timeout=30).status == "succeeded"
    assert client.get_run(run_id).status == "running"

    decided = client.approve(request.id, by="alice", comment="looks good")
    assert decided.status == "approved"
    assert decided.decided_by == "alice"
    view = client.wait(run_id, timeout=30)
    assert view.status == "succeeded"
    assert view.step("ask").output == {"approved_by": "alice", "comment": "looks good"}
    # Ran twice: once to ask, once to go on with the decision replayed; never waited twice.
    assert trace_lines(trace_dir) == [
        "approval before 1",
        "approval before 2",
        "approval after 2 alice",
    ]
    kinds = [e.kind for e in client.events(run_id)]
    assert "request_approval" in kinds
    assert "wait_step" in kinds
    assert "decide_approval" in kinds

    with pytest.raises(AlreadyDecided, match="already approved by alice"):
        client.reject(request.id, by="bob")


def test_rejected_approval_fails_the_step_and_the_run(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    client.register_definition(APPROVE)
    run_id = client.start_run("gated", inputs={"trace_dir": str(trace_dir)})
    request = wait_for(lambda: pending(client, run_id), what="the approval request")
    client.reject(request.id, by="bob", comment="not today")
    view = client.wait(run_id, timeout=30)
    assert view.status == "failed"
    assert view.step("ask").error["type"] == "ApprovalRejected"
    assert "bob" in view.step("ask").error["message"]
    assert "not today" in view.step("ask").error["message"]
    assert view.step("after").status == "cancelled"


def test_step_may_catch_a_rejection(stack: Stack, client: Client, trace_dir: Path) -> None:
    stack.start_worker(concurrency=1)
    spec = {"name": "catcher", "steps": [{"key": "ask", "task": "t.approval"}]}
    run_id = client.start_run(spec=spec, inputs={"catch": True, "trace_dir": str(trace_dir)})
    request = wait_for(lambda: pending(client, run_id), what="the approval request")
    client.reject(request.id, by="bob")
    view = client.wait(run_id, timeout=30)
    assert view.status == "succeeded"
    assert view.step("ask").output == {"refused": "ApprovalRejected"}


def test_two_people_deciding_at_once_exactly_one_wins(
    stack: Stack, stack_settings: Any, client: Client, trace_dir: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stack.start_worker(concurrency=1)
    client.register_definition(APPROVE)
    run_id = client.start_run("gated", inputs={"trace_dir": str(trace_dir)})
    request = wait_for(lambda: pending(client, run_id), what="the approval request")

    def decide(who: str) -> str:
        with Client(stack_settings) as c:
            try:
                if who.startswith("approver"):
                    c.approve(request.id, by=who)
                else:
                    c.reject(request.id, by=who)
                return "won"
            except AlreadyDecided:
                return "lost"

    people = [f"approver{i}" for i in range(4)] + [f"rejecter{i}" for i in range(4)]
    with ThreadPoolExecutor(len(people)) as pool:
        outcomes = list(pool.map(decide, people))
    assert outcomes.count("won") == 1, outcomes
    winner = people[outcomes.index("won")]
    final = client.get_approval(request.id)
    assert final.decided_by == winner
    view = client.wait(run_id, timeout=30)
    assert view.status == ("succeeded" if winner.startswith("approver") else "failed")
    # The step's wait was resolved once: one resumed attempt, whatever the race.
    assert trace_lines(trace_dir).count("approval before 2") == 1


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("fail", "failed"), ("approve", "succeeded")],
)
def test_expired_approval_follows_its_policy(
    stack: Stack, client: Client, trace_dir: Path, policy: str, expected: str
) -> None:
    stack.start_worker(concurrency=1)
    stack.start_beat()
    spec = {"name": f"expiring-{policy}", "steps": [{"key": "ask", "task": "t.approval"}]}
    inputs = {"timeout": 1.5, "on_timeout": policy, "trace_dir": str(trace_dir)}
    run_id = client.start_run(spec=spec, inputs=inputs)
    view = client.wait(run_id, timeout=40)
    assert view.status == expected
    (request,) = client.list_approvals(None, run_id=run_id)
    assert request.status == "expired"
    if policy == "fail":
        assert view.step("ask").error["type"] == "ApprovalExpired"
    else:
        assert view.step("ask").output["approved_by"] == "cairn (on_timeout=approve)"
    with pytest.raises(AlreadyDecided, match="already expired"):
        client.approve(request.id, by="late")


def test_expired_approval_escalates_to_another_group_once(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    stack.start_beat()
    spec = {"name": "escalating", "steps": [{"key": "ask", "task": "t.approval"}]}
    inputs = {
        "timeout": 1.5,
        "on_timeout": "escalate",
        "escalate_to": "managers",
        "trace_dir": str(trace_dir),
    }
    run_id = client.start_run(spec=spec, inputs=inputs)
    escalated = wait_for(
        lambda: [a for a in client.list_approvals(run_id=run_id) if a.group == "managers"],
        what="the escalated request",
    )[0]
    first = client.get_approval(escalated.escalated_from_id)
    assert first.status == "expired"
    assert first.group is None
    assert escalated.status == "pending"
    assert escalated.on_timeout == "fail"
    assert client.list_approvals(run_id=run_id, group="managers") == [escalated]
    client.approve(escalated.id, by="carol")
    view = client.wait(run_id, timeout=30)
    assert view.status == "succeeded"
    assert view.step("ask").output["approved_by"] == "carol"


def test_approval_survives_kill_of_every_worker_and_beat(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    worker = stack.start_worker(concurrency=1)
    beat = stack.start_beat()
    client.register_definition(APPROVE)
    run_id = client.start_run("gated", inputs={"trace_dir": str(trace_dir)})
    request = wait_for(lambda: pending(client, run_id), what="the approval request")
    worker.kill()
    beat.kill()
    client.approve(request.id, by="dave")  # nothing of cairn runs but the database
    assert client.get_run(run_id).step("ask").status == "queued"
    stack.start_worker(concurrency=1)
    stack.start_beat()
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded"
    assert view.step("ask").output["approved_by"] == "dave"
    assert trace_lines(trace_dir).count("approval after 2 dave") == 1


def test_definition_gate_asks_before_the_step_runs(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    spec = {
        "name": "gate",
        "steps": [
            {
                "key": "deploy",
                "task": "t.increment",
                "approve": {"title": "Deploy to production?", "group": "ops"},
            }
        ],
    }
    run_id = client.start_run(spec=spec, inputs={"x": 1, "trace_dir": str(trace_dir)})
    request = wait_for(lambda: pending(client, run_id), what="the gate's request")
    assert request.title == "Deploy to production?"
    assert request.group == "ops"
    time.sleep(0.5)
    assert trace_lines(trace_dir) == []  # the step's code has not run
    client.approve(request.id, by="erin")
    assert client.wait(run_id, timeout=30).step("deploy").output == {"x": 2}
    assert trace_lines(trace_dir) == ["increment deploy 2"]


def test_bad_decisions_are_refused_naming_the_field(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    client.register_definition(APPROVE)
    run_id = client.start_run("gated", inputs={"trace_dir": str(trace_dir)})
    request = wait_for(lambda: pending(client, run_id), what="the approval request")
    with pytest.raises(DefinitionError, match="by"):
        client.approve(request.id, by="")
    with pytest.raises(DefinitionError, match="budget_usd"):
        client.approve(request.id, by="x", budget_usd=5)
    assert client.get_approval(request.id).status == "pending"  # nothing half-written
    with transaction(client.runtime.engine) as session:
        waits = session.scalars(select(StepWait.status)).all()
    assert waits == ["waiting"]


def test_cancelling_a_waiting_run_cancels_its_request_and_a_retry_asks_anew(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    client.register_definition(APPROVE)
    run_id = client.start_run("gated", inputs={"trace_dir": str(trace_dir)})
    first = wait_for(lambda: pending(client, run_id), what="the approval request")
    assert client.cancel(run_id, "changed our minds")
    view = client.get_run(run_id)
    assert view.status == "cancelled"
    assert view.step("ask").status == "cancelled"
    assert client.get_approval(first.id).status == "cancelled"
    with pytest.raises(AlreadyDecided, match="already cancelled"):
        client.approve(first.id, by="late")

    assert client.retry(run_id) == 1
    second = wait_for(
        lambda: [a for a in client.list_approvals(run_id=run_id) if a.id != first.id],
        what="a new request",
    )[0]
    client.approve(second.id, by="frank")
    assert client.wait(run_id, timeout=30).step("ask").output["approved_by"] == "frank"
