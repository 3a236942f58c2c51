"""Per-key concurrency: 20 runs with limit 2 on one key never have more than 2 attempts
running at once (sampled from the database), on 2 workers x 3 processes with a kill -9
in the middle; throttled steps hold no worker and spend no attempt."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import RunEvent, WorkflowStep
from db.session import transaction
from db.states import StepStatus
from tests.support.sampling import MostAtOnce
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client
from worker.errors import DefinitionError

RUNNING = StepStatus.RUNNING.value
LIMITED = {
    "name": "limited",
    "steps": [
        {
            "key": "call",
            "task": "t.sleep",
            "concurrency": {"key": "{customer}", "limit": 2},
            "retry": {"max_attempts": 3},
        }
    ],
}


def on_key(client: Client, suffix: str) -> MostAtOnce:
    """Samples the steps of the concurrency key ending in ``suffix``."""
    return MostAtOnce(client, WorkflowStep.concurrency_key.like(f"%:{suffix}"))


# The claim path is shared; PostgreSQL is where concurrent claims race.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_twenty_runs_on_one_key_never_run_more_than_two_at_once(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    doomed = stack.start_worker(concurrency=3)
    stack.start_worker(concurrency=3)
    stack.start_beat()
    runs = [
        client.start_run(
            spec=LIMITED,
            inputs={"customer": "acme", "seconds": 0.4, "trace_dir": str(trace_dir)},
        )
        for _ in range(20)
    ]
    other = client.start_run(
        spec=LIMITED, inputs={"customer": "globex", "seconds": 0.1, "trace_dir": str(trace_dir)}
    )
    with on_key(client, "acme") as sampled:
        deadline = time.monotonic() + 60
        while len(trace_lines(trace_dir)) < 8:
            assert time.monotonic() < deadline, "the runs did not get going"
            time.sleep(0.05)
        doomed.kill()
        stack.start_worker(concurrency=3)
        views = [client.wait(run_id, timeout=120) for run_id in runs]
    assert [v.status for v in views] == ["succeeded"] * 20
    assert client.wait(other, timeout=30).status == "succeeded"
    assert 1 <= sampled.most(RUNNING) <= 2
    with transaction(client.runtime.engine) as session:
        attempts = session.scalars(
            select(WorkflowStep.attempt).where(WorkflowStep.run_id.in_(runs))
        ).all()
        throttled = session.scalar(
            select(func.count()).where(RunEvent.run_id.in_(runs), RunEvent.kind == "throttle")
        )
    # Waiting for a slot spends no attempt: only the (at most 2) attempts killed mid-step
    # ran again.
    assert sum(a - 1 for a in attempts) <= 2
    assert throttled  # most of the 20 waited for a slot


def test_a_key_naming_a_missing_input_is_refused(client: Client) -> None:
    with pytest.raises(DefinitionError) as caught:
        client.start_run(spec=LIMITED, inputs={"seconds": 0})
    assert caught.value.field == "steps.call.concurrency.key"
    assert "'customer'" in caught.value.message
    with transaction(client.runtime.engine) as session:
        assert session.scalar(select(func.count()).select_from(WorkflowStep)) == 0


def test_a_workflow_limit_applies_to_every_step_and_keys_are_per_tenant(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    spec = {
        "name": "whole",
        "concurrency": {"key": "shared", "limit": 1},
        "steps": [{"key": "a", "task": "t.sleep"}, {"key": "b", "task": "t.sleep"}],
    }
    stack.start_worker(concurrency=3)
    run_id = client.start_run(spec=spec, inputs={"seconds": 0.3})
    with on_key(client, "shared") as sampled:
        assert client.wait(run_id, timeout=60).status == "succeeded"
    assert sampled.most(RUNNING) == 1
    with transaction(client.runtime.engine) as session:
        keys = set(
            session.scalars(
                select(WorkflowStep.concurrency_key).where(WorkflowStep.run_id == run_id)
            )
        )
    assert len(keys) == 1
    assert next(iter(keys)).endswith(":shared")  # type: ignore[union-attr]
    assert uuid.UUID(next(iter(keys)).split(":")[0])  # type: ignore[union-attr]
