"""The lease and the fence: who may write for a step attempt, and until when.

Every write of an attempt is guarded by :meth:`Fence.where` (its attempt number and lease
owner, the step still running); the heartbeat pushes the lease forward with
:func:`extend_lease`. A write whose guard matches no row raises :class:`StaleAttempt`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, update
from sqlalchemy.orm import Session

from db.models import WorkflowStep
from db.states import StepStatus
from worker.errors import StaleAttempt


@dataclass(frozen=True, slots=True)
class Fence:
    """Who may write for a step attempt: its attempt number and its lease owner."""

    step_id: uuid.UUID
    run_id: uuid.UUID
    attempt: int
    owner: str

    def where(self) -> ColumnElement[bool]:
        """The guard of every write of this attempt."""
        return and_(
            WorkflowStep.id == self.step_id,
            WorkflowStep.attempt == self.attempt,
            WorkflowStep.lease_owner == self.owner,
            WorkflowStep.status == StepStatus.RUNNING,
        )


@dataclass(frozen=True, slots=True)
class Inline:
    """The lease a completion may take on the one dependent it releases (inline
    continuation, see ``continuation.py``): a step on ``queue`` whose task is one of
    ``tasks`` (the worker's), for ``owner`` until ``lease_s`` from the claim."""

    queue: str
    tasks: frozenset[str]
    owner: str
    lease_s: float

    def can_run(self, task: str) -> bool:
        """Whether the worker has ``task``."""
        return task in self.tasks


def extend_lease(session: Session, fence: Fence, lease_s: float, now: datetime) -> bool:
    """Push the lease to ``now + lease_s``; return whether the step was asked to stop."""
    row = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(fence.where())
            .values(lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(WorkflowStep.cancel_requested)
        )
        .first()
    )
    if row is None:
        raise StaleAttempt(
            f"step {fence.step_id} attempt {fence.attempt} lost its lease; stopping it"
        )
    return bool(row[0])
