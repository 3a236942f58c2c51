"""What the verbs share: the fence, the messages they return, events and run endings."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, update
from sqlalchemy.orm import Session

from db.models import Artifact, CostRecord, Message, RunEvent, WorkflowRun, WorkflowStep
from db.states import RunStatus, StepStatus


@dataclass(frozen=True, slots=True)
class StepMessage:
    """A step made ready by a verb: send ``execute_step(step_id, attempt)`` after commit."""

    step_id: uuid.UUID
    attempt: int
    run_id: uuid.UUID
    key: str
    task: str
    queue: str
    priority: int


#: Columns a verb returns for every step it queues.
MESSAGE_COLUMNS = (
    WorkflowStep.id,
    WorkflowStep.attempt,
    WorkflowStep.run_id,
    WorkflowStep.key,
    WorkflowStep.task,
    WorkflowStep.queue,
    WorkflowStep.priority,
)


def to_messages(rows: Iterable[Any]) -> list[StepMessage]:
    """StepMessages from rows selected or returned with ``MESSAGE_COLUMNS`` first."""
    return [
        StepMessage(
            step_id=r[0], attempt=r[1], run_id=r[2], key=r[3], task=r[4], queue=r[5], priority=r[6]
        )
        for r in rows
    ]


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
class CostEntry:
    """A cost recorded by a step, waiting for the next checkpoint or completion."""

    seq: int
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    usd: Decimal
    meta: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MessageEntry:
    """A conversation message recorded by a step, waiting like a cost."""

    seq: int
    role: str
    content: str
    tool_calls: list[Any] | None = None


@dataclass(frozen=True, slots=True)
class ArtifactEntry:
    """An object an attempt uploaded; its row is written with the next commit."""

    name: str
    key: str
    size: int
    sha256: str
    content_type: str | None = None


@dataclass(slots=True)
class Records:
    """Costs, messages and artifacts an attempt recorded since its last commit."""

    costs: list[CostEntry] = field(default_factory=list)
    messages: list[MessageEntry] = field(default_factory=list)
    artifacts: list[ArtifactEntry] = field(default_factory=list)

    def usd(self) -> Decimal:
        """Money in these costs."""
        return sum((c.usd for c in self.costs), Decimal(0))


def write_records(session: Session, fence: Fence, records: Records, now: datetime) -> Decimal:
    """Insert an attempt's pending costs, messages and artifact rows; return the money.

    An artifact name written again (by a later attempt, or twice by one) points its row
    at the newest object; the older object becomes an orphan that retention deletes.
    """
    base = {"run_id": fence.run_id, "step_id": fence.step_id, "attempt": fence.attempt}
    if records.costs:
        session.execute(
            insert(CostRecord),
            [
                base
                | {
                    "seq": c.seq,
                    "provider": c.provider,
                    "model": c.model,
                    "input_tokens": c.input_tokens,
                    "output_tokens": c.output_tokens,
                    "usd": c.usd,
                    "meta": c.meta,
                    "created_at": now,
                }
                for c in records.costs
            ],
        )
    if records.messages:
        session.execute(
            insert(Message),
            [
                base
                | {
                    "seq": m.seq,
                    "role": m.role,
                    "content": m.content,
                    "tool_calls": m.tool_calls,
                    "created_at": now,
                }
                for m in records.messages
            ],
        )
    if records.artifacts:
        names = [a.name for a in records.artifacts]
        session.execute(
            delete(Artifact).where(
                Artifact.run_id == fence.run_id,
                Artifact.step_id == fence.step_id,
                Artifact.name.in_(names),
            )
        )
        latest = {a.name: a for a in records.artifacts}  # the last put of a name wins
        session.execute(
            insert(Artifact),
            [
                base
                | {
                    "name": a.name,
                    "key": a.key,
                    "size": a.size,
                    "sha256": a.sha256,
                    "content_type": a.content_type,
                    "created_at": now,
                }
                for a in latest.values()
            ],
        )
    return records.usd()


def add_event(
    session: Session,
    run_id: uuid.UUID,
    kind: str,
    now: datetime,
    *,
    step_id: uuid.UUID | None = None,
    attempt: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append to the run's event log; ``kind`` is the name of the verb that acted."""
    session.execute(
        insert(RunEvent).values(
            run_id=run_id, kind=kind, step_id=step_id, attempt=attempt, data=data, created_at=now
        )
    )


ACTIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)
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
    guard = [WorkflowRun.id == run_id, WorkflowRun.status.in_(ACTIVE_RUN)]
    if tenant_id is not None:
        guard.append(WorkflowRun.tenant_id == tenant_id)
    ended = session.execute(
        update(WorkflowRun)
        .where(*guard)
        .values(status=status, error=error, finished_at=now, updated_at=now)
        .returning(WorkflowRun.id)
    ).first()
    if ended is None:
        return False
    session.execute(
        update(WorkflowStep)
        .where(WorkflowStep.run_id == run_id, WorkflowStep.status.in_(NOT_STARTED))
        .values(status=StepStatus.CANCELLED, finished_at=now, next_attempt_at=None)
    )
    session.execute(
        update(WorkflowStep)
        .where(WorkflowStep.run_id == run_id, WorkflowStep.status == StepStatus.RUNNING)
        .values(cancel_requested=True)
    )
    add_event(session, run_id, kind, now, data={"status": str(status), "error": error})
    return True
