"""retry_run: start a failed or cancelled run again from the steps that did not succeed.

Succeeded steps keep their outputs and are not re-run. Failed steps are queued again with
a fresh attempt budget; cancelled ones go back to pending (or queued, when everything
upstream already succeeded).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import StepEdge, WorkflowRun, WorkflowStep
from db.states import RunStatus, StepStatus
from worker.errors import IllegalTransition, NotFound
from worker.machine.events import add_event
from worker.machine.messages import MESSAGE_COLUMNS, StepMessage, to_messages
from worker.machine.transitions import REOPEN_READY, REOPEN_RUN, REOPEN_WAITING, queued


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
    if run.status not in REOPEN_RUN.sources:
        raise IllegalTransition("run", run.status, REOPEN_RUN.target)
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
            WorkflowStep.id,
            WorkflowStep.status,
            WorkflowStep.attempt,
            WorkflowStep.server_releases,
            WorkflowStep.wait_resumes,
            WorkflowStep.retry,
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
        move = REOPEN_READY if ready else REOPEN_WAITING
        if step.status not in move.sources:
            raise IllegalTransition("step", step.status, move.target)
        values: dict[str, Any] = {
            "status": move.target,
            "pending_upstream": waiting,
            "error": None,
            "next_attempt_at": None,
            "finished_at": None,
            "cancel_requested": False,
            # A fresh budget: as many attempts of its own as the policy gives (those
            # released for server faults, or ended waiting, never counted).
            "max_attempts": step.attempt
            - step.server_releases
            - step.wait_resumes
            + int(step.retry.get("max_attempts", 1)),
        }
        if ready:
            values |= {"attempt": step.attempt + 1, **queued(now)}
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
        .where(WorkflowRun.id == run_id, REOPEN_RUN.guard())
        .values(
            status=REOPEN_RUN.target,
            error=None,
            outputs=None,
            finished_at=None,
            steps_left=len(steps) - len(succeeded),
            updated_at=now,
        )
    )
    add_event(session, run_id, "retry_run", now, data={"requeued": len(messages)})
    return messages
