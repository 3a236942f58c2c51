"""Map steps: one element per item of a list made at run time, at most max_parallel at
once, joined in order for the step after; a kill -9 in the middle resumes at the exact
frontier (every element succeeds once as a committed effect). Real workers and beat."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import CostRecord, WorkflowStep
from db.session import transaction
from db.states import StepStatus
from tests.support.sampling import MostAtOnce
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client
from worker.errors import DefinitionError


def mapped(max_parallel: int, over: str = "split.items") -> dict[str, Any]:
    return {
        "name": "mapped",
        "steps": [
            {"key": "split", "task": "t.split"},
            {
                "key": "each",
                "after": ["split"],
                "map": {"over": over, "task": "t.square", "max_parallel": max_parallel},
                "retry": {"max_attempts": 3, "backoff_base_s": 0.1},
            },
            {"key": "sum", "task": "t.collect", "after": ["each"]},
        ],
    }


ELEMENTS = WorkflowStep.map_parent_id.is_not(None)
RUNNING, QUEUED = StepStatus.RUNNING.value, StepStatus.QUEUED.value


def element_costs(client: Client, run_id: uuid.UUID) -> dict[int, int]:
    """Committed cost records per element index: one per committed success."""
    with transaction(client.runtime.engine) as session:
        rows = session.execute(
            select(WorkflowStep.map_index, func.count())
            .join(CostRecord, CostRecord.step_id == WorkflowStep.id)
            .where(WorkflowStep.run_id == run_id, WorkflowStep.map_parent_id.is_not(None))
            .group_by(WorkflowStep.map_index)
        ).all()
    return dict(rows)  # type: ignore[arg-type]


def test_a_map_runs_each_item_at_most_max_parallel_at_once_and_joins_in_order(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=4)
    run_id = client.start_run(
        spec=mapped(3), inputs={"n": 20, "nap": 0.2, "trace_dir": str(trace_dir)}
    )
    with MostAtOnce(client, WorkflowStep.run_id == run_id, ELEMENTS) as sampled:
        view = client.wait(run_id, timeout=90)
    assert view.status == "succeeded", view.error
    assert view.step("sum").output == {
        "n": 20,
        "indexes": list(range(20)),
        "sum": sum(i * i for i in range(20)),
    }
    assert view.step("each").status == "succeeded"
    assert [o["y"] for o in view.step("each").output] == [i * i for i in range(20)]
    assert 1 <= sampled.most(RUNNING, QUEUED) <= 3
    assert sampled.most(RUNNING) <= 3
    assert view.outputs == {"sum": view.step("sum").output}
    assert element_costs(client, run_id) == dict.fromkeys(range(20), 1)
    assert sorted(line for line in trace_lines(trace_dir)) == sorted(
        f"square {i} 1" for i in range(20)
    )


# SQLite runs the same verbs in the main test of this file; PostgreSQL only here.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_an_empty_list_joins_at_once(stack: Stack, client: Client) -> None:
    stack.start_worker(concurrency=1)
    view = client.wait(client.start_run(spec=mapped(2), inputs={"n": 0}), timeout=30)
    assert view.status == "succeeded"
    assert view.step("sum").output == {"n": 0, "indexes": [], "sum": 0}


# SQLite runs the same verbs in the main test of this file; PostgreSQL only here.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_map_over_what_is_not_a_list_fails_the_run_naming_it(
    stack: Stack, client: Client
) -> None:
    stack.start_worker(concurrency=1)
    view = client.wait(client.start_run(spec=mapped(2, over="split.nope")), timeout=30)
    assert view.status == "failed"
    assert view.error is not None
    assert view.error["type"] == "MapError"
    assert view.error["step"] == "each"
    assert "the output of 'split' has no 'nope'" in view.error["message"]


def test_a_bad_map_definition_is_refused(client: Client) -> None:
    spec = mapped(2, over="other.items")
    with pytest.raises(DefinitionError, match=r"steps\[1\]\.map\.over.*must be in this step"):
        client.start_run(spec=spec)
    spec = mapped(2)
    spec["steps"][1]["task"] = "t.square"  # type: ignore[index]
    with pytest.raises(DefinitionError, match="either task or map"):
        client.start_run(spec=spec)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_1000_element_map_survives_a_kill_9_in_the_middle(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    doomed = stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    stack.start_beat()
    run_id = client.start_run(
        spec=mapped(8), inputs={"n": 1000, "nap": 0.01, "trace_dir": str(trace_dir)}
    )
    with MostAtOnce(client, WorkflowStep.run_id == run_id, ELEMENTS) as sampled:
        deadline = time.monotonic() + 120
        while len(trace_lines(trace_dir)) < 300:
            assert time.monotonic() < deadline, "the map did not get going"
            time.sleep(0.05)
        doomed.kill()
        stack.start_worker(concurrency=4)
        view = client.wait(run_id, timeout=240)
    assert view.status == "succeeded", view.error
    out = view.step("sum").output
    assert out["n"] == 1000
    assert out["indexes"] == list(range(1000))
    assert out["sum"] == sum(i * i for i in range(1000))
    # Exactly one committed success per element, whatever ran twice around the kill.
    assert element_costs(client, run_id) == dict.fromkeys(range(1000), 1)
    assert sampled.most(RUNNING) <= 8
    assert sampled.most(RUNNING, QUEUED) <= 8
    ran = {line.split()[1] for line in trace_lines(trace_dir)}
    assert ran == {str(i) for i in range(1000)}
