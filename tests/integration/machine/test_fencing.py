"""Fencing: a duplicate message runs nothing; a superseded attempt writes nothing."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from db.models import Checkpoint, CostRecord, Message, WorkflowStep
from db.session import run_transaction, transaction
from db.types import utcnow
from tests.support.queries import count, event_kinds
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client
from worker.errors import StaleAttempt, StepNotClaimable
from worker.machine.claim import claim_step
from worker.machine.complete import complete_step
from worker.machine.lease import extend_lease
from worker.machine.messages import StepMessage
from worker.machine.progress import record_checkpoint
from worker.machine.records import CostEntry, MessageEntry, Records
from worker.machine.recovery import reap_expired


def test_the_same_message_delivered_twice_runs_the_step_once(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    spec = {"name": "once", "steps": [{"key": "s", "task": "t.sleep"}]}
    run_id = client.start_run(spec=spec, inputs={"seconds": 0.5, "trace_dir": str(trace_dir)})
    step = client.get_run(run_id).step("s")
    duplicate = StepMessage(step.id, 1, run_id, "s", "t.sleep", "cairn", 5)
    assert client.runtime.dispatcher.send([duplicate, duplicate]) == 2  # 3 copies in all
    stack.start_worker(concurrency=3)
    view = client.wait(run_id, timeout=30)
    assert view.status == "succeeded"
    time.sleep(1)  # let the other copies arrive and be dropped
    assert trace_lines(trace_dir) == ["sleep s 1"]
    assert event_kinds(client.runtime.engine, run_id).count("claim_step") == 1


def test_a_superseded_attempt_cannot_commit_anything(client: Client) -> None:
    """Attempt 1 loses its lease (the reaper re-queues it as attempt 2, which another worker
    claims); every write attempt 1 tries afterwards is refused and leaves no row."""
    engine, settings = client.runtime.engine, client.settings
    spec = {"name": "zombie", "steps": [{"key": "s", "task": "t.loop"}]}
    run_id = client.start_run(spec=spec)
    step_id = client.get_run(run_id).step("s").id
    now = utcnow()
    first = run_transaction(engine, lambda s: claim_step(s, step_id, 1, "zombie", 5, now))
    records = Records(
        [CostEntry(1, "openai", "gpt", 1, 1, Decimal("1"))], [MessageEntry(1, "user", "hi")]
    )
    run_transaction(
        engine, lambda s: record_checkpoint(s, first.fence, 1, {"done": 1}, records, 5, now)
    )
    # The zombie's lease runs out; the reaper hands the step to attempt 2.
    with transaction(engine) as session:
        session.execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == step_id)
            .values(lease_expires_at=now - timedelta(seconds=1))
        )
    reaped = run_transaction(engine, lambda s: reap_expired(s, utcnow(), 5))
    assert [(m.step_id, m.attempt) for m in reaped.requeued] == [(step_id, 2)]
    second = run_transaction(engine, lambda s: claim_step(s, step_id, 2, "healthy", 5, utcnow()))
    assert second.resume_state == {"done": 1}  # resumes from the zombie's committed state

    late = Records([CostEntry(2, "openai", "gpt", 1, 1, Decimal("5"))], [])
    with pytest.raises(StaleAttempt):
        run_transaction(
            engine, lambda s: record_checkpoint(s, first.fence, 2, {"done": 2}, late, 5, utcnow())
        )
    with pytest.raises(StaleAttempt):
        run_transaction(engine, lambda s: complete_step(s, first.fence, {"z": 1}, late, utcnow()))
    with pytest.raises(StaleAttempt):
        run_transaction(engine, lambda s: extend_lease(s, first.fence, 5, utcnow()))
    with pytest.raises(StepNotClaimable):  # attempt 1's message, delivered again
        run_transaction(engine, lambda s: claim_step(s, step_id, 1, "late", 5, utcnow()))

    assert count(engine, Checkpoint, step_id=step_id) == 1
    assert count(engine, CostRecord, step_id=step_id) == 1
    assert count(engine, Message, step_id=step_id) == 1
    view = client.get_run(run_id)
    assert view.step("s").status == "running"
    assert view.step("s").output is None
    assert view.cost_usd == Decimal(1)
    del settings
