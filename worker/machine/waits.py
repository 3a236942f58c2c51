"""Waiting without a worker: a step's waits (approval, signal, sleep) and its paused run's.

A step that waits ends its attempt in ONE fenced transaction: the wait is recorded, the
step goes ``running -> waiting`` with its lease cleared, and its pending costs are
written. No worker holds it. When what it waits for comes (a decision, a signal, the end
of a sleep or of a timeout), the wait is resolved and the step queued again with attempt
+ 1 (``wait_resumes`` + 1, which the retry policy does not count). The step's code runs
again from the top (or from its checkpoint); its n-th wait call finds wait ``seq`` n
resolved and returns the recorded result at once: a deterministic replay of its waits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.orm import Session

from db.models import Signal, StepWait, WorkflowRun, WorkflowStep
from db.states import TERMINAL_RUN, RunStatus, StepStatus, WaitKind, WaitStatus
from worker import limits
from worker.errors import NonDeterministicWait, NotFound, RunCancelled, RunEnded, StaleAttempt
from worker.ids import new_id
from worker.machine.budgets import add_spend, pending_budget_approval
from worker.machine.concurrency import freed
from worker.machine.events import add_event
from worker.machine.lease import Fence
from worker.machine.messages import MESSAGE_COLUMNS, StepMessage, to_messages
from worker.machine.records import Records, write_records
from worker.machine.requests import raise_approval
from worker.machine.transitions import SUSPEND, WAKE, lease_cleared, queued
from worker.serialization import encode_checked
from worker.settings import Settings


@dataclass(frozen=True)
class WaitRequest:
    """Wait call number ``seq`` of a step's code: what it waits for (a paused run's budget
    wait has no ``seq``: it is not a call of the step's code, and is never replayed)."""

    seq: int | None
    kind: WaitKind
    #: The signal's name.
    name: str | None = None
    #: When a sleep ends, or the timeout passes; None: no timeout.
    wake_at: datetime | None = None
    #: What an approval request asks: its columns (title, details, group_name, ...).
    approval: dict[str, Any] | None = None
    #: The child run a child wait waits for (its id is the wait's ``name`` too).
    child_run_id: uuid.UUID | None = None


@dataclass(frozen=True)
class WaitOutcome:
    """The recorded result of the wait (return it), or None: the attempt now waits."""

    result: dict[str, Any] | None
    approval_id: uuid.UUID | None = None
    #: Throttled steps the room this attempt left woke (send them once committed).
    woken: list[StepMessage] = field(default_factory=list)


def begin_wait(
    session: Session,
    fence: Fence,
    key: str,
    request: WaitRequest,
    records: Records,
    now: datetime,
) -> WaitOutcome:
    """Replay wait ``request.seq`` if it was resolved; else end the attempt waiting for it.

    A signal already sent and not yet delivered is delivered at once (no wait); so is a
    sleep already over. Raises :class:`NonDeterministicWait` when the code's n-th wait is
    not the one it made last time, :class:`RunCancelled` when the run has ended.
    """
    found = (
        session.connection()
        .execute(
            select(
                StepWait.id, StepWait.kind, StepWait.name, StepWait.status, StepWait.result
            ).where(StepWait.step_id == fence.step_id, StepWait.seq == request.seq)
        )
        .first()
    )
    if found is not None:
        if found.kind != request.kind or (found.name or None) != request.name:
            raise NonDeterministicWait(
                f"step {key}: its wait #{request.seq} was {_what(found.kind, found.name)} "
                f"and is now {_what(request.kind, request.name)}; a step must make the same "
                "wait calls in the same order each time it runs"
            )
        if found.status == WaitStatus.DONE:
            return WaitOutcome(found.result)
        woken = _suspend(session, fence, records, now, {"seq": request.seq, "kind": request.kind})
        return WaitOutcome(None, woken=woken)
    status = _lock_run(session, fence.run_id)
    if status not in (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.PAUSED):
        raise RunCancelled(f"run {fence.run_id} has ended ({status})")
    wait_id = new_id()
    if request.kind == WaitKind.SIGNAL:
        signal = _undelivered_signal(session, fence.run_id, request.name)
        if signal is not None:
            result = {"payload": signal.payload}
            _insert_wait(session, fence, wait_id, request, None, now, result=result)
            _deliver(session, signal.id, wait_id, now)
            return WaitOutcome(result)
    if request.kind == WaitKind.CHILD:
        assert request.child_run_id is not None
        # Locked: a child that ends now either committed (its end is read here) or waits
        # for this commit, and then finds this wait to wake.
        ended = child_result(session, fence.run_id, request.child_run_id, lock=True)
        if ended is not None:
            _insert_wait(session, fence, wait_id, request, None, now, result=ended)
            return WaitOutcome(ended)
    if request.kind == WaitKind.SLEEP and request.wake_at is not None and request.wake_at <= now:
        result = {"slept": True}
        _insert_wait(session, fence, wait_id, request, None, now, result=result)
        return WaitOutcome(result)
    approval_id = None
    if request.approval is not None:
        approval_id = raise_approval(session, fence, key, request.approval, now)
    _insert_wait(session, fence, wait_id, request, approval_id, now)
    woken = _suspend(
        session,
        fence,
        records,
        now,
        {
            "seq": request.seq,
            "kind": request.kind,
            "name": request.name,
            "approval_id": str(approval_id) if approval_id else None,
            "until": request.wake_at.isoformat() if request.wake_at else None,
        },
    )
    return WaitOutcome(None, approval_id, woken)


def verify_wait(session: Session, fence: Fence, seq: int) -> WaitOutcome | None:
    """What :func:`begin_wait` committed, read back; None if it did not commit."""
    found = (
        session.connection()
        .execute(
            select(StepWait.status, StepWait.result, StepWait.approval_id).where(
                StepWait.step_id == fence.step_id, StepWait.seq == seq
            )
        )
        .first()
    )
    if found is None:
        return None
    suspended = session.connection().scalar(
        select(WorkflowStep.id).where(
            WorkflowStep.id == fence.step_id,
            WorkflowStep.attempt == fence.attempt,
            WorkflowStep.status == StepStatus.WAITING,
        )
    )
    if suspended is not None:
        return WaitOutcome(None, found.approval_id)
    if found.status == WaitStatus.DONE:
        return WaitOutcome(found.result)
    return None


def wait_for_budget(session: Session, fence: Fence, records: Records, now: datetime) -> bool:
    """End the attempt waiting for its paused run's new budget; False if the run is not
    paused (any more): the step goes on."""
    if _lock_run(session, fence.run_id) != RunStatus.PAUSED:
        return False
    approval_id = pending_budget_approval(session, fence.run_id)
    request = WaitRequest(seq=None, kind=WaitKind.BUDGET)
    wait_id = new_id()
    _insert_wait(session, fence, wait_id, request, approval_id, now)
    # What the room it leaves wakes is left to beat's timer: the step's run is paused.
    _suspend(
        session,
        fence,
        records,
        now,
        {"kind": WaitKind.BUDGET, "approval_id": str(approval_id) if approval_id else None},
    )
    return True


def verify_budget_wait(session: Session, fence: Fence) -> bool | None:
    """Whether :func:`wait_for_budget` suspended the attempt (None: nothing committed)."""
    status = session.connection().scalar(
        select(WorkflowStep.status).where(
            WorkflowStep.id == fence.step_id, WorkflowStep.attempt == fence.attempt
        )
    )
    return True if status == StepStatus.WAITING else None


def resolve_wait(
    session: Session, wait_id: uuid.UUID, result: dict[str, Any], now: datetime
) -> list[StepMessage]:
    """Record the result of a waiting wait and wake its step; [] if it was resolved already."""
    row = (
        session.connection()
        .execute(
            update(StepWait)
            .where(StepWait.id == wait_id, StepWait.status == WaitStatus.WAITING)
            .values(status=WaitStatus.DONE, result=result, resolved_at=now)
            .returning(StepWait.step_id, StepWait.run_id, StepWait.kind, StepWait.seq)
        )
        .first()
    )
    if row is None:
        return []
    add_event(
        session,
        row.run_id,
        "resolve_wait",
        now,
        step_id=row.step_id,
        data={"kind": row.kind, "seq": row.seq, "result": result},
    )
    return wake_step(session, row.step_id, now)


def wake_step(session: Session, step_id: uuid.UUID, now: datetime) -> list[StepMessage]:
    """Queue a waiting step again (attempt + 1) once none of its waits is still waiting."""
    still = exists().where(StepWait.step_id == step_id, StepWait.status == WaitStatus.WAITING)
    rows = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == step_id, WAKE.guard(), ~still)
            .values(
                attempt=WorkflowStep.attempt + 1,
                wait_resumes=WorkflowStep.wait_resumes + 1,
                **queued(now),
            )
            .returning(*MESSAGE_COLUMNS)
        )
        .all()
    )
    return to_messages(rows)


def waits_on(session: Session, approval_id: uuid.UUID) -> list[uuid.UUID]:
    """The waiting waits of an approval request."""
    return list(
        session.connection().scalars(
            select(StepWait.id).where(
                StepWait.approval_id == approval_id, StepWait.status == WaitStatus.WAITING
            )
        )
    )


def resume_budget_waits(session: Session, run_id: uuid.UUID, now: datetime) -> list[StepMessage]:
    """Wake every step of the run waiting for its new budget."""
    ids = session.connection().scalars(
        select(StepWait.id).where(
            StepWait.run_id == run_id,
            StepWait.kind == WaitKind.BUDGET,
            StepWait.status == WaitStatus.WAITING,
        )
    )
    messages: list[StepMessage] = []
    for wait_id in list(ids):
        messages += resolve_wait(session, wait_id, {"resumed": True}, now)
    return messages


def check_signal(name: Any, payload: Any, settings: Settings) -> tuple[str, Any]:
    """A signal's name and JSON payload as they may be stored; refuse anything else."""
    limits.check_text("name", name, limits.SIGNAL_NAME_MAX)
    encode_checked(
        payload,
        "payload",
        max_depth=settings.max_json_depth,
        limit_bytes=settings.inline_limit_bytes,
    )
    return name, payload


def signal_run(
    session: Session,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    name: str,
    payload: Any,
    now: datetime,
) -> tuple[uuid.UUID, list[StepMessage]]:
    """Store a signal for one of the tenant's runs and deliver it to the run's oldest step
    waiting for ``name``, if any; :class:`NotFound` for another tenant's run,
    :class:`RunEnded` for a run that has ended (nothing would ever take it).

    The run row is locked first, as :func:`begin_wait` does: a signal and a step that
    starts waiting at the same moment cannot miss each other.
    """
    status = session.connection().scalar(
        select(WorkflowRun.status)
        .where(WorkflowRun.id == run_id, WorkflowRun.tenant_id == tenant_id)
        .with_for_update()
    )
    if status is None:
        raise NotFound(f"run {run_id} not found")
    if status in TERMINAL_RUN:
        raise RunEnded(f"run {run_id} has ended ({status}); it takes no signal")
    signal_id = new_id()
    session.connection().execute(
        insert(Signal).values(
            id=signal_id, run_id=run_id, name=name, payload=payload, created_at=now
        )
    )
    add_event(session, run_id, "signal", now, data={"name": name, "signal_id": str(signal_id)})
    return signal_id, _match_signal(session, run_id, name, now)


def match_stray_signals(session: Session, now: datetime, limit: int = 200) -> list[StepMessage]:
    """Deliver signals kept while a step of their run now waits for them (beat's safety net)."""
    pairs = (
        session.connection()
        .execute(
            select(Signal.run_id, Signal.name)
            .where(
                Signal.delivered_at.is_(None),
                exists().where(
                    StepWait.run_id == Signal.run_id,
                    StepWait.name == Signal.name,
                    StepWait.kind == WaitKind.SIGNAL,
                    StepWait.status == WaitStatus.WAITING,
                ),
            )
            .distinct()
            .limit(limit)
        )
        .all()
    )
    messages: list[StepMessage] = []
    for run_id, name in pairs:
        _lock_run(session, run_id)
        messages += _match_signal(session, run_id, name, now)
    return messages


def _match_signal(
    session: Session, run_id: uuid.UUID, name: str, now: datetime
) -> list[StepMessage]:
    messages: list[StepMessage] = []
    while True:
        signal = _undelivered_signal(session, run_id, name)
        if signal is None:
            return messages
        wait_id = session.connection().scalar(
            select(StepWait.id)
            .where(
                StepWait.run_id == run_id,
                StepWait.kind == WaitKind.SIGNAL,
                StepWait.name == name,
                StepWait.status == WaitStatus.WAITING,
            )
            .order_by(StepWait.created_at, StepWait.id)
            .limit(1)
        )
        if wait_id is None:
            return messages  # kept for the step that waits for it next
        woken = resolve_wait(session, wait_id, {"payload": signal.payload}, now)
        _deliver(session, signal.id, wait_id, now)
        messages += woken


def child_result(
    session: Session, parent_run_id: uuid.UUID, child_run_id: uuid.UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    """A child run's end as its parent's wait records it; None while it runs.
    :class:`NotFound` if it is not a child of ``parent_run_id``."""
    query = select(
        WorkflowRun.status, WorkflowRun.outputs, WorkflowRun.error, WorkflowRun.parent_run_id
    ).where(WorkflowRun.id == child_run_id)
    row = session.connection().execute(query.with_for_update() if lock else query).first()
    if row is None or row.parent_run_id != parent_run_id:
        raise NotFound(f"run {child_run_id} is not a child run of run {parent_run_id}")
    if row.status not in TERMINAL_RUN:
        return None
    return child_end(row.status, row.outputs, row.error)


def child_end(status: str, outputs: Any, error: Any) -> dict[str, Any]:
    """A child run's end as its parent's wait records it (what ``wait_child`` reads)."""
    return {"status": str(status), "outputs": outputs, "error": error}


def wake_parent(
    session: Session,
    parent_run_id: uuid.UUID | None,
    child_run_id: uuid.UUID,
    result: dict[str, Any],
    now: datetime,
) -> list[StepMessage]:
    """A child run ended: resolve the parent's waits for it and wake the steps."""
    ids = session.connection().scalars(
        select(StepWait.id).where(
            StepWait.child_run_id == child_run_id, StepWait.status == WaitStatus.WAITING
        )
    )
    messages: list[StepMessage] = []
    for wait_id in list(ids):
        messages += resolve_wait(session, wait_id, result, now)
    return messages


def ended_children(session: Session, now: datetime, limit: int = 200) -> list[StepMessage]:
    """Wake parents whose child run ended while nobody woke them (a child failed or was
    cancelled, which does not wake its parent in its own transaction): beat's timer."""
    rows = (
        session.connection()
        .execute(
            select(StepWait.id, WorkflowRun.status, WorkflowRun.outputs, WorkflowRun.error)
            .join(WorkflowRun, WorkflowRun.id == StepWait.child_run_id)
            .where(
                StepWait.status == WaitStatus.WAITING,
                StepWait.kind == WaitKind.CHILD,
                WorkflowRun.status.in_(sorted(TERMINAL_RUN)),
            )
            .limit(limit)
        )
        .all()
    )
    messages: list[StepMessage] = []
    for wait_id, status, outputs, error in rows:
        messages += resolve_wait(session, wait_id, child_end(status, outputs, error), now)
    return messages


def due_waits(session: Session, now: datetime, limit: int = 500) -> list[Any]:
    """Waiting waits whose time came: ``(id, kind, approval_id)``, oldest first."""
    return list(
        session.connection()
        .execute(
            select(StepWait.id, StepWait.kind, StepWait.approval_id)
            .where(StepWait.status == WaitStatus.WAITING, StepWait.wake_at <= now)
            .order_by(StepWait.wake_at)
            .limit(limit)
        )
        .all()
    )


def drop_run_waits(session: Session, run_id: uuid.UUID) -> None:
    """A run ended: its waits still waiting are forgotten (a retry of the run waits anew)."""
    session.connection().execute(
        delete(StepWait).where(StepWait.run_id == run_id, StepWait.status == WaitStatus.WAITING)
    )


def _what(kind: str, name: str | None) -> str:
    return f"{kind} {name!r}" if name else str(kind)


def _lock_run(session: Session, run_id: uuid.UUID) -> str | None:
    return session.connection().scalar(
        select(WorkflowRun.status).where(WorkflowRun.id == run_id).with_for_update()
    )


def _undelivered_signal(session: Session, run_id: uuid.UUID, name: str | None) -> Any:
    return (
        session.connection()
        .execute(
            select(Signal.id, Signal.payload)
            .where(Signal.run_id == run_id, Signal.name == name, Signal.delivered_at.is_(None))
            .order_by(Signal.created_at, Signal.id)
            .limit(1)
        )
        .first()
    )


def _deliver(session: Session, signal_id: uuid.UUID, wait_id: uuid.UUID, now: datetime) -> None:
    session.connection().execute(
        update(Signal)
        .where(Signal.id == signal_id, Signal.delivered_at.is_(None))
        .values(wait_id=wait_id, delivered_at=now)
    )


def _insert_wait(
    session: Session,
    fence: Fence,
    wait_id: uuid.UUID,
    request: WaitRequest,
    approval_id: uuid.UUID | None,
    now: datetime,
    *,
    result: dict[str, Any] | None = None,
) -> None:
    session.connection().execute(
        insert(StepWait).values(
            id=wait_id,
            run_id=fence.run_id,
            step_id=fence.step_id,
            seq=request.seq,
            kind=request.kind,
            status=WaitStatus.DONE if result is not None else WaitStatus.WAITING,
            name=request.name,
            approval_id=approval_id,
            child_run_id=request.child_run_id,
            wake_at=request.wake_at,
            result=result,
            resolved_at=now if result is not None else None,
            created_at=now,
        )
    )


def _suspend(
    session: Session, fence: Fence, records: Records, now: datetime, data: dict[str, Any]
) -> list[StepMessage]:
    """End the attempt waiting; the throttled steps the room it left woke."""
    row = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(fence.where(), SUSPEND.guard())
            .values(status=SUSPEND.target, **lease_cleared())
            .returning(WorkflowStep.concurrency_key)
        )
        .first()
    )
    if row is None:
        raise StaleAttempt(
            f"step {fence.step_id} attempt {fence.attempt} lost its lease; "
            "its wait was not recorded"
        )
    add_spend(session, fence.run_id, write_records(session, fence, records, now), now)
    add_event(
        session,
        fence.run_id,
        "wait_step",
        now,
        step_id=fence.step_id,
        attempt=fence.attempt,
        data={k: v for k, v in data.items() if v is not None},
    )
    return freed(session, fence.run_id, row.concurrency_key, now)
