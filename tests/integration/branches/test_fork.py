"""Fork a run at a step with edited inputs: what came before is reused (no claim, no
cost, the same artifacts), the step and those after it run again; the diff names the
changes and nothing else. Real workers, SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import CostRecord, RunEvent, WorkflowStep
from db.session import transaction
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client
from worker.errors import DefinitionError, NotFound

CHAIN = {
    "name": "chain",
    "steps": [
        {"key": "s1", "task": "t.write"},
        {"key": "s2", "task": "t.write", "after": ["s1"]},
        {"key": "s3", "task": "t.write", "after": ["s2"]},
        {"key": "s4", "task": "t.write", "after": ["s3"]},
        {"key": "s5", "task": "t.write", "after": ["s4"]},
    ],
}


def claims(client: Client, run_id: uuid.UUID) -> dict[str, int]:
    """Claims per step key, from the run's event log."""
    with transaction(client.runtime.engine) as session:
        rows = session.execute(
            select(WorkflowStep.key, func.count())
            .join(RunEvent, RunEvent.step_id == WorkflowStep.id)
            .where(RunEvent.run_id == run_id, RunEvent.kind == "claim_step")
            .group_by(WorkflowStep.key)
        ).all()
    return dict(rows)  # type: ignore[arg-type]


def costs(client: Client, run_id: uuid.UUID) -> dict[str, int]:
    """Cost records per step key of the run."""
    with transaction(client.runtime.engine) as session:
        rows = session.execute(
            select(WorkflowStep.key, func.count())
            .join(CostRecord, CostRecord.step_id == WorkflowStep.id)
            .where(CostRecord.run_id == run_id)
            .group_by(WorkflowStep.key)
        ).all()
    return dict(rows)  # type: ignore[arg-type]


@pytest.fixture
def finished(stack: Stack, client: Client, trace_dir: Path) -> uuid.UUID:
    stack.start_worker(concurrency=2)
    run_id = client.start_run(spec=CHAIN, inputs={"topic": "cats", "trace_dir": str(trace_dir)})
    assert client.wait(run_id, timeout=60).status == "succeeded"
    return run_id


def test_fork_from_step_3_reuses_1_and_2_and_the_diff_names_the_changes(
    client: Client, finished: uuid.UUID, trace_dir: Path
) -> None:
    before = len(trace_lines(trace_dir))
    fork_id = client.fork(finished, "s3", inputs={"topic": "dogs"}, label="dogs")
    view = client.wait(fork_id, timeout=60)
    assert view.status == "succeeded"
    # Steps 1-2 did not run again: no claim, no cost, no execution; 3-5 ran once each.
    assert claims(client, fork_id) == {"s3": 1, "s4": 1, "s5": 1}
    assert costs(client, fork_id) == {"s3": 1, "s4": 1, "s5": 1}
    assert trace_lines(trace_dir)[before:] == ["write s3 1", "write s4 1", "write s5 1"]
    assert view.cost_usd == Decimal("0.03")
    # The reused steps' outputs and artifacts are the parent's (same objects).
    parent = client.get_run(finished)
    for key in ("s1", "s2"):
        assert view.step(key).output == parent.step(key).output
        assert client.download(fork_id, "note.txt", step=key) == client.download(
            finished, "note.txt", step=key
        )
    assert view.step("s3").output["text"] == "s3(plain):dogs<s2(plain):cats<s1(plain):cats"

    diff = client.diff(finished, fork_id)
    assert diff.lineage == "b was forked from a at step s3"
    assert [(c.path, c.before, c.after) for c in diff.inputs] == [("topic", "cats", "dogs")]
    assert diff.changed_steps == ["s3", "s4", "s5"]
    s1, s2, s3, s4, s5 = diff.steps
    assert s1.verdict == s2.verdict == "same"
    assert s1.reused
    assert s2.reused
    for changed in (s3, s4, s5):
        assert not changed.reused
        assert [(c.path, c.kind) for c in changed.inputs] == [("topic", "changed")]
        assert [c.path for c in changed.output] == ["text"]  # same length: only the text
        assert [c.path for c in changed.artifacts] == ["note.txt"]
        assert changed.cost_usd[0] == changed.cost_usd[1]


# SQLite runs the same verbs in the main test of this file; PostgreSQL only here.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_step_inputs_edit_one_step_and_a_fork_of_a_fork_points_at_the_step_that_ran(
    client: Client, finished: uuid.UUID, trace_dir: Path
) -> None:
    first = client.fork(finished, "s4", step_inputs={"s4": {"tone": "loud"}})
    assert client.wait(first, timeout=60).status == "succeeded"
    view = client.get_run(first)
    assert view.step("s4").output["text"].startswith("s4(loud):cats<s3(plain)")
    assert view.step("s5").output["text"].startswith("s5(plain):cats<s4(loud)")
    # Fork the fork at s5: s1-s3 came from the first run, s4 from the fork.
    second = client.fork(first, "s5", step_inputs={"s5": {"tone": "soft"}})
    assert client.wait(second, timeout=60).status == "succeeded"
    assert claims(client, second) == {"s5": 1}
    diff = client.diff(finished, second)
    assert diff.changed_steps == ["s4", "s5"]
    assert [(c.path, c.after) for c in diff.steps[3].inputs] == [("tone", "loud")]
    assert diff.lineage.startswith("two runs of one workflow")
    siblings = client.diff(first, second)
    assert siblings.changed_steps == ["s5"]
    assert all(s.reused for s in siblings.steps[:4])


def test_a_bad_fork_is_refused_naming_what_is_wrong(client: Client, finished: uuid.UUID) -> None:
    with pytest.raises(DefinitionError, match="has no step 'nope'"):
        client.fork(finished, "nope")
    with pytest.raises(DefinitionError, match=r"step_inputs\.s1.*does not run again"):
        client.fork(finished, "s3", step_inputs={"s1": {"tone": "x"}})
    with pytest.raises(DefinitionError, match=r"inputs\.s2.*name of a step"):
        client.fork(finished, "s3", inputs={"s2": 1})
    with pytest.raises(NotFound):
        client.fork(uuid.uuid4(), "s3")
    with transaction(client.runtime.engine) as session:
        runs = session.scalar(select(func.count()).select_from(WorkflowStep))
    assert runs == 5  # nothing half-written


# SQLite runs the same verbs in the main test of this file; PostgreSQL only here.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_running_run_can_be_forked(stack: Stack, client: Client, trace_dir: Path) -> None:
    spec = {
        "name": "slow",
        "steps": [
            {"key": "a", "task": "t.write"},
            {"key": "b", "task": "t.sleep", "after": ["a"]},
            {"key": "c", "task": "t.write", "after": ["b"]},
        ],
    }
    stack.start_worker(concurrency=2)
    run_id = client.start_run(spec=spec, inputs={"seconds": 3, "trace_dir": str(trace_dir)})
    deadline = time.monotonic() + 30
    while client.get_run(run_id).step("b").status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    fork_id = client.fork(run_id, "b", inputs={"seconds": 0.1})
    view = client.wait(fork_id, timeout=60)
    assert view.status == "succeeded"
    assert claims(client, fork_id) == {"b": 1, "c": 1}
    assert client.wait(run_id, timeout=60).status == "succeeded"
