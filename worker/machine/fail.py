"""Verbs of an attempt that ended badly, ONE fenced transaction each.

``fail_step``: the step's own code raised (its retry policy decides). ``release_step``: a
server of cairn's failed it (database, artifact store): the attempt ends unspent and the
step is queued again later. ``cancel_step``: its run was cancelled or failed.
Each has a ``verify_*`` that reads the fence back after a COMMIT that lost its connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import WorkflowStep
from db.states import RunStatus, StepStatus
from worker.errors import StaleAttempt
from worker.machine.budgets import add_spend
from worker.machine.concurrency import freed
from worker.machine.ending import end_run
from worker.machine.events import add_event
from worker.machine.lease import Fence
from worker.machine.messages import StepMessage
from worker.machine.records import Records, write_records
from worker.machine.retry import RetryDecision
from worker.machine.transitions import FAIL, RETRY_LATER, STOP, lease_cleared


@dataclass(frozen=True)
class Ended:
    """How an attempt ended: the step's new status, and the throttled steps the room it
    left woke (messages to send once committed)."""

    status: str
    messages: list[StepMessage] = field(default_factory=list)


def fail_step(
    session: Session,
    fence: Fence,
    key: str,
    error: dict[str, Any],
    decision: RetryDecision,
    records: Records,
    now: datetime,
) -> Ended:
    """Record a failed attempt: ``retrying`` until ``next_attempt_at``, or ``failed``.

    A step that fails for good fails its run: steps not yet started are cancelled and
    running ones asked to stop.
    """
    status = RETRY_LATER.target if decision.retry else FAIL.target
    slot_key = _end_attempt(
        session, fence, status, now, error=error, next_attempt_at=decision.next_attempt_at
    )
    _record_spend(session, fence, records, now)
    add_event(
        session,
        fence.run_id,
        "fail_step",
        now,
        step_id=fence.step_id,
        attempt=fence.attempt,
        data={
            "error": error,
            "retry_at": decision.next_attempt_at.isoformat() if decision.next_attempt_at else None,
        },
    )
    if not decision.retry:
        end_run(
            session,
            fence.run_id,
            RunStatus.FAILED,
            now,
            kind="fail_run",
            error={"step": key, **error},
        )
    # After the run's end: its own throttled steps are cancelled by then, not woken.
    return Ended(status, freed(session, fence.run_id, slot_key, now))


def release_step(
    session: Session,
    fence: Fence,
    error: dict[str, Any],
    next_attempt_at: datetime,
    records: Records,
    now: datetime,
) -> Ended:
    """End an attempt that a server fault stopped, without spending it.

    The step waits in ``retrying`` until ``next_attempt_at``; ``server_releases`` grows by
    one so the retry policy does not count this attempt. Costs recorded by the attempt
    are kept: the money was spent.
    """
    slot_key = _end_attempt(
        session,
        fence,
        RETRY_LATER.target,
        now,
        error=error,
        next_attempt_at=next_attempt_at,
        server_releases=WorkflowStep.server_releases + 1,
    )
    _record_spend(session, fence, records, now)
    add_event(
        session,
        fence.run_id,
        "release_step",
        now,
        step_id=fence.step_id,
        attempt=fence.attempt,
        data={"error": error, "retry_at": next_attempt_at.isoformat()},
    )
    return Ended(RETRY_LATER.target, freed(session, fence.run_id, slot_key, now))


def verify_ended(session: Session, fence: Fence, *statuses: StepStatus) -> Ended | None:
    """How the fenced attempt ended, if it already ended in one of ``statuses`` (the
    throttled steps its end woke were sent nowhere: beat's timer queues them).

    Only the attempt's owner moves a running step off this attempt number into
    ``retrying`` or ``cancelled``; ``failed`` may also be the reaper's verdict, which the
    attempt then shares.
    """
    found = session.connection().scalar(
        select(WorkflowStep.status).where(
            WorkflowStep.id == fence.step_id,
            WorkflowStep.attempt == fence.attempt,
            WorkflowStep.status.in_(statuses),
            WorkflowStep.lease_owner.is_(None),
        )
    )
    return Ended(str(found)) if found is not None else None


def cancel_step(session: Session, fence: Fence, records: Records, now: datetime) -> Ended:
    """Record that a running attempt stopped because its run was cancelled or failed."""
    slot_key = _end_attempt(session, fence, STOP.target, now)
    _record_spend(session, fence, records, now)
    add_event(
        session, fence.run_id, "cancel_step", now, step_id=fence.step_id, attempt=fence.attempt
    )
    return Ended(STOP.target, freed(session, fence.run_id, slot_key, now))


def _end_attempt(
    session: Session, fence: Fence, status: StepStatus, now: datetime, **values: Any
) -> str | None:
    """End the fenced attempt in ``status``; its concurrency key (None: none)."""
    row = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(fence.where())
            .values(status=status, finished_at=now, **lease_cleared(), **values)
            .returning(WorkflowStep.concurrency_key)
        )
        .first()
    )
    if row is None:
        raise StaleAttempt(
            f"step {fence.step_id} attempt {fence.attempt} lost its lease; its end was not recorded"
        )
    key: str | None = row.concurrency_key
    return key


def _record_spend(session: Session, fence: Fence, records: Records, now: datetime) -> None:
    """Money spent by a failed attempt was still spent: record it."""
    add_spend(session, fence.run_id, write_records(session, fence, records, now), now)
