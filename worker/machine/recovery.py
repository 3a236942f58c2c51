"""Recovery verbs run by beat: the reaper and the reconciler.

Each is safe when two beats run it at once: every change is a guarded UPDATE that
re-checks the condition it acts on, so the second runner finds nothing left to do.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from db.models import Worker, WorkflowStep
from db.states import RunStatus, StepStatus, WorkerStatus
from worker.machine.ending import end_run
from worker.machine.events import add_event
from worker.machine.messages import MESSAGE_COLUMNS, StepMessage, Taken, to_messages
from worker.machine.transitions import (
    FAIL,
    REQUEUE_DUE,
    REQUEUE_EXPIRED,
    STOP,
    lease_cleared,
    queued,
    status_is,
)


@dataclass(frozen=True)
class Reaped:
    """What the reaper did."""

    requeued: list[StepMessage]
    failed: int
    cancelled: int


def reap_expired(
    session: Session, now: datetime, crash_max_attempts: int, limit: int = 500
) -> Reaped:
    """Running steps whose lease expired: queued again with attempt + 1, or failed.

    A worker that died is not the step's fault, so a step is re-run until it has had
    ``max(max_attempts, crash_max_attempts)`` attempts (those released for server faults
    left out).
    """
    expired = session.execute(
        select(
            WorkflowStep.id,
            WorkflowStep.attempt,
            WorkflowStep.max_attempts,
            WorkflowStep.run_id,
            WorkflowStep.key,
            WorkflowStep.cancel_requested,
            WorkflowStep.server_releases + WorkflowStep.wait_resumes,
        )
        .where(
            status_is(WorkflowStep.status, StepStatus.RUNNING), WorkflowStep.lease_expires_at < now
        )
        .order_by(WorkflowStep.lease_expires_at)
        .limit(limit)
    ).all()
    requeued: list[StepMessage] = []
    failed = cancelled = 0
    for step_id, attempt, max_attempts, run_id, key, cancel_requested, releases in expired:
        guard = (
            WorkflowStep.id == step_id,
            status_is(WorkflowStep.status, StepStatus.RUNNING),
            WorkflowStep.attempt == attempt,
            WorkflowStep.lease_expires_at < now,
        )
        cleared = lease_cleared()
        if cancel_requested:
            done = session.execute(
                update(WorkflowStep)
                .where(*guard, STOP.guard())
                .values(status=STOP.target, finished_at=now, **cleared)
                .returning(WorkflowStep.id)
            ).first()
            cancelled += done is not None
        elif attempt - releases < max(max_attempts, crash_max_attempts):
            rows = session.execute(
                update(WorkflowStep)
                .where(*guard, REQUEUE_EXPIRED.guard())
                .values(attempt=attempt + 1, **queued(now), **cleared)
                .returning(*MESSAGE_COLUMNS)
            ).all()
            requeued += to_messages(rows)
            if rows:
                add_event(
                    session,
                    run_id,
                    "reap_step",
                    now,
                    step_id=step_id,
                    attempt=attempt,
                    data={"requeued_as": attempt + 1},
                )
        else:
            error = {
                "type": "LeaseExpired",
                "message": f"the worker running attempt {attempt} stopped heartbeating "
                "and no attempts are left",
            }
            done = session.execute(
                update(WorkflowStep)
                .where(*guard, FAIL.guard())
                .values(status=FAIL.target, finished_at=now, error=error, **cleared)
                .returning(WorkflowStep.id)
            ).first()
            if done is not None:
                failed += 1
                add_event(
                    session,
                    run_id,
                    "reap_step",
                    now,
                    step_id=step_id,
                    attempt=attempt,
                    data={"error": error},
                )
                end_run(
                    session,
                    run_id,
                    RunStatus.FAILED,
                    now,
                    kind="fail_run",
                    error={"step": key, **error},
                )
    return Reaped(requeued, failed, cancelled)


def requeue_retrying(
    session: Session, now: datetime, step_id: uuid.UUID | None = None, limit: int = 500
) -> list[StepMessage]:
    """Retrying steps whose backoff is over: queued again with attempt + 1."""
    due = select(WorkflowStep.id).where(REQUEUE_DUE.guard(), WorkflowStep.next_attempt_at <= now)
    if step_id is not None:
        due = due.where(WorkflowStep.id == step_id)
    rows = session.execute(
        update(WorkflowStep)
        .where(
            WorkflowStep.id.in_(due.limit(limit).scalar_subquery()),
            REQUEUE_DUE.guard(),
            WorkflowStep.next_attempt_at <= now,
        )
        .values(attempt=WorkflowStep.attempt + 1, **queued(now))
        .returning(*MESSAGE_COLUMNS)
    ).all()
    messages = to_messages(rows)
    for m in messages:
        add_event(session, m.run_id, "requeue_step", now, step_id=m.step_id, attempt=m.attempt)
    return messages


def stale_queues(session: Session, now: datetime, after_s: float) -> set[str]:
    """Queues holding steps that no worker claimed within ``after_s`` of their dispatch."""
    cutoff = now - timedelta(seconds=after_s)
    return set(
        session.scalars(
            select(WorkflowStep.queue)
            .where(
                status_is(WorkflowStep.status, StepStatus.QUEUED),
                WorkflowStep.dispatched_at < cutoff,
            )
            .distinct()
        )
    )


def redispatch_stale(
    session: Session,
    now: datetime,
    after_s: float,
    limit: int = 500,
    *,
    busy_queues: Collection[str] = (),
    busy_after_s: float | None = None,
    stranded: Collection[Taken] = (),
    lost_before: datetime | None = None,
) -> list[StepMessage]:
    """Queued steps no worker claimed within ``after_s`` of their dispatch: send again.

    This covers lost messages (a Redis restart, a worker killed holding a message, a
    process killed between its commit and its send). A message that was only slow is
    harmless, since the second delivery of the same attempt is refused by the claim; still,
    in ``busy_queues`` (the broker holds messages there) a step may just be waiting its
    turn, so there it is sent again only after ``busy_after_s`` - unless its message is
    one of ``stranded``, taken by a worker and never acknowledged (killed holding it):
    that attempt's message, taken after its last dispatch (once sent again, it is not
    sent again for the same taken message). A step dispatched ``lost_before`` the
    broker's data was lost (``Dispatcher.broker_epoch``) lost its message for certain:
    it is sent again at once, whatever ``after_s`` (the caller dates the new dispatch no
    earlier than the epoch, or it would count as lost again).
    """
    cutoff = now - timedelta(seconds=after_s)
    due = WorkflowStep.dispatched_at < cutoff
    if busy_queues and busy_after_s is not None:
        busy_cutoff = now - timedelta(seconds=busy_after_s)
        due = and_(
            due,
            or_(
                WorkflowStep.queue.not_in(list(busy_queues)),
                WorkflowStep.dispatched_at < busy_cutoff,
                *(
                    and_(
                        WorkflowStep.id == taken.step_id,
                        WorkflowStep.attempt == taken.attempt,
                        WorkflowStep.dispatched_at <= taken.at,
                    )
                    for taken in stranded
                ),
            ),
        )
    if lost_before is not None:
        due = or_(due, WorkflowStep.dispatched_at < lost_before)
    stale = select(WorkflowStep.id).where(status_is(WorkflowStep.status, StepStatus.QUEUED), due)
    rows = session.execute(
        update(WorkflowStep)
        .where(
            WorkflowStep.id.in_(stale.limit(limit).scalar_subquery()),
            status_is(WorkflowStep.status, StepStatus.QUEUED),
            due,
        )
        .values(dispatched_at=now)
        .returning(*MESSAGE_COLUMNS)
    ).all()
    return to_messages(rows)


def mark_silent_workers(session: Session, now: datetime, silent_after_s: float) -> int:
    """Workers that stopped heartbeating are marked ``error``; returns how many."""
    cutoff = now - timedelta(seconds=silent_after_s)
    result = session.execute(
        update(Worker)
        .where(
            Worker.status.in_((WorkerStatus.INITIALIZED, WorkerStatus.RUNNING)),
            Worker.heartbeat_at < cutoff,
        )
        .values(status=WorkerStatus.ERROR)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
