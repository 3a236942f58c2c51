"""What a step's success sets in motion: dependents queued, map steps expanded and joined.

Part of the completion's transaction: every count here is decided by one UPDATE under
the row lock of the step it counts on, so a join is queued (or a map joined) once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, and_, bindparam, case, select, update
from sqlalchemy.orm import Session

from db.models import StepEdge, WorkflowStep
from db.states import StepStatus
from db.types import UTCDateTime
from worker.machine.maps import Joined, element_done, expand_map
from worker.machine.messages import MESSAGE_COLUMNS, Released, to_messages
from worker.machine.transitions import RELEASE


def _release_statement() -> Any:
    """The UPDATE that counts a success off its dependents, built once (it runs for every
    completion; building and coercing it each time was a tenth of a step's CPU)."""
    last = and_(WorkflowStep.pending_upstream == 1, WorkflowStep.map.is_(None))
    now = bindparam("now", type_=UTCDateTime())
    return (
        update(WorkflowStep)
        .where(
            WorkflowStep.id.in_(
                select(StepEdge.downstream_id).where(
                    StepEdge.upstream_id == bindparam("step_id", type_=Uuid())
                )
            ),
            RELEASE.guard(),
        )
        .values(
            pending_upstream=WorkflowStep.pending_upstream - 1,
            status=case((last, RELEASE.target), else_=WorkflowStep.status),
            # Attempts only grow: a step re-opened by a run retry keeps its fencing history.
            attempt=case((last, WorkflowStep.attempt + 1), else_=WorkflowStep.attempt),
            queued_at=case((last, now), else_=WorkflowStep.queued_at),
            dispatched_at=case((last, now), else_=WorkflowStep.dispatched_at),
        )
        .returning(
            *MESSAGE_COLUMNS,
            WorkflowStep.status,
            WorkflowStep.pending_upstream,
            WorkflowStep.map,
        )
    )


_RELEASE = _release_statement()


def release_dependents(
    session: Session, run_id: uuid.UUID, step_id: uuid.UUID, now: datetime
) -> Released:
    """Count this success off every dependent; those left with no upstream become queued.

    One UPDATE per completion: the row lock on each dependent serialises concurrent
    completions, and the ``CASE`` reads the value before the decrement, so only the
    completion that takes it from 1 to 0 queues the step. A map step that reaches 0 stays
    pending and is expanded into its elements instead.

    On PostgreSQL a completion runs this same UPDATE inside its own statement (the
    ``released`` CTE of ``complete_pg``, to save a round trip): change both together.
    """
    rows = session.connection().execute(_RELEASE, {"step_id": step_id, "now": now}).all()
    return released_from(session, run_id, rows, now)


def released_from(
    session: Session, run_id: uuid.UUID, rows: Sequence[Any], now: datetime
) -> Released:
    """What counting a success off its dependents set in motion: the ``rows`` the release
    returned (message columns, then status, upstream left, and the map of a map step)
    made queued steps to send, and map steps left with no upstream are expanded."""
    released = Released(to_messages(r for r in rows if r[-3] == StepStatus.QUEUED))
    for row in rows:
        if row[-1] is not None and row[-2] == 0:
            messages, joined = expand_map(session, row[0], now)
            released.messages += messages
            released += release_joined(session, run_id, joined, now)
    return released


def expand_ready_maps(
    session: Session, run_id: uuid.UUID, map_step_ids: list[uuid.UUID], now: datetime
) -> Released:
    """Expand map steps whose upstream had succeeded when they were created (a fork's)."""
    released = Released()
    for map_step_id in map_step_ids:
        messages, joined = expand_map(session, map_step_id, now)
        released.messages += messages
        released += release_joined(session, run_id, joined, now)
    return released


def release_element(
    session: Session, run_id: uuid.UUID, map_step_id: uuid.UUID, now: datetime
) -> Released:
    """A map element succeeded: its slot goes to the next element, or the map joins."""
    messages, joined = element_done(session, map_step_id, now)
    return Released(messages) if joined is None else release_joined(session, run_id, joined, now)


def release_joined(
    session: Session, run_id: uuid.UUID, joined: Joined | None, now: datetime
) -> Released:
    """A joined map step succeeded like any step: release what comes after it."""
    if joined is None:
        return Released()
    released = Released(finished=joined.finished.finished, messages=joined.finished.messages)
    released += release_dependents(session, run_id, joined.map_step_id, now)
    return released
