"""Child runs: a step starts runs and waits for them without holding a worker; a child
killed mid-step recovers and wakes its parent; cancelling the parent cancels the
children; a failed child fails the step by its retry policy, whose next attempt re-opens
that child. Real workers and beat, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import WorkflowRun
from db.session import transaction
from tests.integration.machine.test_recovery import wait_for_line
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client

KID = {
    "name": "kid",
    "steps": [
        {"key": "snooze", "task": "t.sleep"},
        {"key": "grow", "task": "t.increment", "after": ["snooze"]},
    ],
}
FLAKY_KID = {"name": "flaky-kid", "steps": [{"key": "try", "task": "t.flaky"}]}


def parent_spec(max_attempts: int = 1) -> dict[str, object]:
    step = {"key": "p", "task": "t.parent", "retry": {"max_attempts": max_attempts}}
    if max_attempts > 1:
        step["retry"] = {"max_attempts": max_attempts, "backoff_base_s": 0.2}
    return {"name": "parent", "steps": [step]}


def child_runs(client: Client, parent: uuid.UUID) -> int:
    with transaction(client.runtime.engine) as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    WorkflowRun.parent_run_id == parent, WorkflowRun.parent_step_id.is_not(None)
                )
            )
            or 0
        )


def wait_until(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# Recovery is the reaper's, tested on both backends elsewhere.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_parent_waits_for_two_children_one_killed_mid_step(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    client.register_definition(KID)
    doomed = stack.start_worker(concurrency=2)
    run_id = client.start_run(
        spec=parent_spec(), inputs={"naps": [0.2, 6], "trace_dir": str(trace_dir)}
    )
    # Both children started; the long one is mid-step when its worker dies.
    wait_until(
        lambda: sum(line == "sleep snooze 1" for line in trace_lines(trace_dir)) == 2,
        "both children's first steps",
    )
    view = client.get_run(run_id)
    assert view.step("p").status == "waiting"  # the parent holds no worker
    stack.start_worker(concurrency=2)
    stack.start_beat()
    doomed.kill()
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    out = view.step("p").output
    assert [o["grow"]["x"] for o in out["outputs"]] == [1, 2]
    # Two children, once each, however often the parent ran; the long one ran twice.
    assert child_runs(client, run_id) == 2
    assert [(c.key, c.status, c.workflow) for c in view.children] == [
        ("kid-0", "succeeded", "kid"),
        ("kid-1", "succeeded", "kid"),
    ]
    assert "sleep snooze 2" in trace_lines(trace_dir)
    kid = client.get_run(out["children"][1])
    assert kid.parent_run_id == run_id
    assert kid.parent_step == "p"
    assert kid.step("snooze").attempt == 2


def test_cancelling_the_parent_cancels_its_children(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    client.register_definition(KID)
    stack.start_worker(concurrency=3)
    run_id = client.start_run(
        spec=parent_spec(), inputs={"naps": [30, 30], "trace_dir": str(trace_dir)}
    )
    wait_until(lambda: len(client.get_run(run_id).children) == 2, "two children")
    assert client.cancel(run_id, "enough")
    view = client.get_run(run_id)
    assert view.status == "cancelled"
    assert [c.status for c in view.children] == ["cancelled", "cancelled"]
    for child in view.children:
        kid = client.get_run(child.run_id)
        assert kid.error is not None
        assert f"its parent run {run_id} ended" in kid.error["message"]


def test_a_failed_child_fails_the_step_whose_retry_reopens_the_child(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    client.register_definition(FLAKY_KID)
    stack.start_worker(concurrency=2)
    stack.start_beat()
    run_id = client.start_run(
        spec=parent_spec(max_attempts=3),
        inputs={"naps": [0], "workflow": "flaky-kid", "fail_times": 1, "trace_dir": str(trace_dir)},
    )
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert child_runs(client, run_id) == 1  # the same child, re-opened
    kid = client.get_run(view.children[0].run_id)
    assert kid.status == "succeeded"
    assert kid.step("try").attempt == 2
    flaky = [line for line in trace_lines(trace_dir) if line.startswith("flaky")]
    assert [re.sub(r" [\d.]+$", "", line) for line in flaky] == ["flaky 1", "flaky 2"]


# SQLite runs the same verbs in the main test of this file; PostgreSQL only here.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_child_that_fails_for_good_fails_the_parent(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    client.register_definition(FLAKY_KID)
    stack.start_worker(concurrency=2)
    stack.start_beat()
    run_id = client.start_run(
        spec=parent_spec(),
        inputs={"naps": [0], "workflow": "flaky-kid", "fail_times": 5, "trace_dir": str(trace_dir)},
    )
    view = client.wait(run_id, timeout=60)
    assert view.status == "failed"
    assert view.error is not None
    assert view.error["type"] == "ChildRunFailed"
    assert str(view.children[0].run_id) in view.error["message"]
    wait_for_line(trace_dir, r"^flaky 1")
