"""retry_run: start a failed or cancelled run again from the steps that did not succeed.

Succeeded steps keep their outputs and are not re-run. Failed steps are queued again with
a fresh attempt budget; cancelled ones go back to pending (or queued, when everything
upstream already succeeded).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import StepEdge, WorkflowRun, WorkflowStep
from db.states import RunStatus, StepStatus
from worker.engine.base import MESSAGE_COLUMNS, StepMessage, add_event, to_messages
from worker.errors import IllegalTransition, NotFound


def retry_run(
    session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID, now: datetime
) -> list[StepMessage]:
    """Re-open the tenant's failed or cancelled run; return the steps to dispatch."""
    run = session.scalar(
        select(WorkflowRun)
        .where(WorkflowRun.id == run_id, WorkflowRun.tenant_id == tenant_id)
        .with_for_update()
    )
    if run is None:
        raise NotFound(f"run {run_id} not found")
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise IllegalTransition("run", run.status, RunStatus.RUNNING)
    running = session.scalar(
        select(func.count()).where(
            WorkflowStep.run_id == run_id, WorkflowStep.status == StepStatus.RUNNING
        )
    )
    if running:
        raise IllegalTransition(
            "run", f"{run.status} with {running} step(s) still stopping", RunStatus.RUNNING
        )
    steps = session.execute(
        select(
            WorkflowStep.id, WorkflowStep.status, WorkflowStep.attempt, WorkflowStep.retry
        ).where(WorkflowStep.run_id == run_id)
    ).all()
    succeeded = {s.id for s in steps if s.status == StepStatus.SUCCEEDED}
    edges = session.execute(
        select(StepEdge.upstream_id, StepEdge.downstream_id).where(StepEdge.run_id == run_id)
    ).all()
    messages: list[StepMessage] = []
    for step in steps:
        if step.id in succeeded:
            continue
        waiting = sum(1 for up, down in edges if down == step.id and up not in succeeded)
        ready = waiting == 0
        values = {
            "status": StepStatus.QUEUED if ready else StepStatus.PENDING,
            "pending_upstream": waiting,
            "error": None,
            "next_attempt_at": None,
            "finished_at": None,
            "cancel_requested": False,
            # A fresh budget: attempts attempt+1 .. attempt+max_attempts of the policy.
            "max_attempts": step.attempt + int(step.retry.get("max_attempts", 1)),
        }
        if ready:
            values |= {"attempt": step.attempt + 1, "queued_at": now, "dispatched_at": now}
        rows = session.execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == step.id, WorkflowStep.status == step.status)
            .values(**values)
            .returning(*MESSAGE_COLUMNS)
        ).all()
        if ready:
            messages += to_messages(rows)
    session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run_id)
        .values(
            status=RunStatus.RUNNING,
            error=None,
            outputs=None,
            finished_at=None,
            steps_left=len(steps) - len(succeeded),
            updated_at=now,
        )
    )
    add_event(session, run_id, "retry_run", now, data={"requeued": len(messages)})
    return messages
