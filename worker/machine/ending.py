"""A run ends early: failed by a step, or cancelled; what has not started is cancelled."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import ApprovalRequest, WorkflowRun, WorkflowStep
from db.states import ApprovalStatus, RunStatus, StepStatus
from worker.machine.events import add_event
from worker.machine.transitions import CANCEL_NOT_STARTED, CANCEL_RUN, FAIL_RUN
from worker.machine.waits import drop_run_waits

#: A run in one of these may still start steps (a paused run's steps wait at their claim).
ACTIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED)
NOT_STARTED = (StepStatus.PENDING, StepStatus.QUEUED, StepStatus.RETRYING)


def end_run(
    session: Session,
    run_id: uuid.UUID,
    status: RunStatus,
    now: datetime,
    *,
    kind: str,
    error: dict[str, Any] | None = None,
    tenant_id: uuid.UUID | None = None,
) -> bool:
    """Fail or cancel a run: steps not started are cancelled, running ones asked to stop.

    Returns False (and changes nothing) when the run had already ended.
    """
    move = FAIL_RUN if status == RunStatus.FAILED else CANCEL_RUN
    guard = [WorkflowRun.id == run_id, move.guard()]
    if tenant_id is not None:
        guard.append(WorkflowRun.tenant_id == tenant_id)
    ended = (
        session.connection()
        .execute(
            update(WorkflowRun)
            .where(*guard)
            .values(status=move.target, error=error, finished_at=now, updated_at=now)
            .returning(WorkflowRun.id)
        )
        .first()
    )
    if ended is None:
        return False
    session.connection().execute(
        update(WorkflowStep)
        .where(WorkflowStep.run_id == run_id, CANCEL_NOT_STARTED.guard())
        .values(status=CANCEL_NOT_STARTED.target, finished_at=now, next_attempt_at=None)
    )
    session.connection().execute(
        update(WorkflowStep)
        .where(WorkflowStep.run_id == run_id, WorkflowStep.status == StepStatus.RUNNING)
        .values(cancel_requested=True)
    )
    close_waits(session, run_id, now, kind)
    add_event(session, run_id, kind, now, data={"status": str(status), "error": error})
    return True


def close_waits(session: Session, run_id: uuid.UUID, now: datetime, why: str) -> None:
    """A run ended: nothing waits for a decision or a signal of it any more (its waits are
    forgotten, so a retry of the run waits anew), and its pending requests are cancelled."""
    drop_run_waits(session, run_id)
    session.connection().execute(
        update(ApprovalRequest)
        .where(ApprovalRequest.run_id == run_id, ApprovalRequest.status == ApprovalStatus.PENDING)
        .values(status=ApprovalStatus.CANCELLED, decided_at=now, decided_by=f"cairn ({why})")
    )
