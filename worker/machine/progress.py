"""Verbs of a running attempt: extend its lease, and commit a checkpoint.

Both are fenced: an attempt that lost its lease gets :class:`StaleAttempt` and its
writes are rolled back with the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import Checkpoint, WorkflowStep
from db.states import StepStatus
from worker.blobs import BlobRef
from worker.machine.budgets import add_spend
from worker.machine.events import add_event
from worker.machine.lease import Fence, extend_lease
from worker.machine.records import Records, write_records
from worker.machine.waits import wait_for_budget


def record_checkpoint(
    session: Session,
    fence: Fence,
    seq: int,
    state: dict[str, Any] | BlobRef,
    records: Records,
    lease_s: float,
    now: datetime,
) -> Checkpointed:
    """Commit a checkpoint with the costs and messages recorded since the last one.

    Returns whether the step was asked to stop, and whether it now waits: when it records
    costs and its run is paused (by these costs or others), the checkpoint is kept and the
    attempt ends waiting for the new budget, to resume from this checkpoint.
    """
    cancel_requested = extend_lease(session, fence, lease_s, now)
    session.connection().execute(
        insert(Checkpoint).values(
            run_id=fence.run_id,
            step_id=fence.step_id,
            attempt=fence.attempt,
            seq=seq,
            state=None if isinstance(state, BlobRef) else state,
            blob_key=state.key if isinstance(state, BlobRef) else None,
            blob_sha256=state.sha256 if isinstance(state, BlobRef) else None,
            blob_size=state.size if isinstance(state, BlobRef) else None,
            created_at=now,
        )
    )
    usd = write_records(session, fence, records, now)
    add_spend(session, fence.run_id, usd, now)
    add_event(
        session,
        fence.run_id,
        "checkpoint",
        now,
        step_id=fence.step_id,
        attempt=fence.attempt,
        data={"seq": seq},
    )
    # Only a checkpoint that spends stops at a paused run: one that records no cost costs
    # no money, and skipping the check keeps it off the run row (no lock, no round trip).
    waiting = bool(usd) and wait_for_budget(session, fence, Records(), now)
    return Checkpointed(cancel_requested, waiting)


@dataclass(frozen=True)
class Checkpointed:
    """What a committed checkpoint tells its attempt."""

    #: The run was cancelled or failed: end the step.
    cancel: bool
    #: The run is paused for a new budget: the attempt ended waiting for it.
    waiting: bool


def verify_checkpoint(session: Session, fence: Fence, seq: int) -> Checkpointed | None:
    """What checkpoint ``seq`` of this attempt told it, if it was committed; None if it
    was not (resolves a COMMIT that lost its connection)."""
    found = (
        session.connection()
        .execute(
            select(Checkpoint.id).where(
                Checkpoint.step_id == fence.step_id,
                Checkpoint.attempt == fence.attempt,
                Checkpoint.seq == seq,
            )
        )
        .first()
    )
    if found is None:
        return None
    step = (
        session.connection()
        .execute(
            select(WorkflowStep.status, WorkflowStep.cancel_requested).where(
                WorkflowStep.id == fence.step_id, WorkflowStep.attempt == fence.attempt
            )
        )
        .first()
    )
    if step is None:
        return Checkpointed(False, False)
    return Checkpointed(
        bool(step.cancel_requested) and step.status == StepStatus.RUNNING,
        step.status == StepStatus.WAITING,
    )
