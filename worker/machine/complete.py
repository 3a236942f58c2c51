"""complete_step: ONE fenced transaction that records an attempt's success.

Output, remaining costs and messages (the step row's queued, started and finished times
are its metrics); dependents whose upstream all succeeded
become queued (decided by one decrement, so a join is queued exactly once); and the run
finishes when its last step does (decided by one decrement of ``steps_left``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import StepEdge, WorkflowRun, WorkflowStep
from db.prepared import sends_alone
from db.states import RunStatus, StepStatus
from worker.blobs import BlobRef
from worker.errors import StaleAttempt
from worker.machine.budgets import check_budgets
from worker.machine.claim import ClaimedStep
from worker.machine.complete_pg import complete_row
from worker.machine.concurrency import freed, make_room
from worker.machine.ending import ACTIVE_RUN, finish_run
from worker.machine.events import add_event
from worker.machine.lease import Fence, Inline
from worker.machine.messages import MESSAGE_COLUMNS, StepMessage, to_messages
from worker.machine.records import Records, write_records
from worker.machine.release import release_dependents, release_element, released_from
from worker.machine.transitions import SUCCEED, lease_cleared


@dataclass(frozen=True)
class Completion:
    """What a completion set in motion."""

    messages: list[StepMessage]
    run_status: str
    #: The dependent the completion claimed for its worker to run next (inline).
    claimed: ClaimedStep | None = None
    #: Committed by its one statement (sent alone): the transaction may write nothing more.
    committed: bool = False


def complete_step(
    session: Session,
    fence: Fence,
    output: dict[str, Any] | BlobRef,
    records: Records,
    now: datetime,
    inline: Inline | None = None,
    *,
    try_alone: bool = False,
) -> Completion:
    """Record the success of the fenced attempt; :class:`StaleAttempt` if it lost its lease.

    A large output arrives as a :class:`BlobRef` (already uploaded); the row keeps its key
    and sha256. With ``inline`` on PostgreSQL, the next link of a chain is claimed in the
    same statement (``complete_pg``) and returned as ``claimed``. ``try_alone``: the step
    is likely to need no statement but its own (``ClaimedStep.plain``); with no records
    either, its statement is tried alone, its commit in the same round trip, and the
    completion is then ``committed``. The run's last step finishes the run in the same
    statement when nothing else must happen at its end (``complete_pg``).
    """
    dependents: list[Any] | None = None  # counted off by the completion itself (PostgreSQL)
    claimed = None
    committed = False
    if session.connection().dialect.name == "postgresql":
        # A completion that spends may pause its run (check_budgets, below): then the
        # next step is claimed after that, by continuation.py, and sees the pause.
        usd = records.usd()
        merge = inline if not usd else None
        alone = try_alone and not records and sends_alone(session.connection())
        done = complete_row(session, fence, output, usd, now, merge, alone=alone)
        if done is None and alone:  # stale, or a statement must go with it: in a transaction
            done = complete_row(session, fence, output, usd, now, merge)
        if done is None:
            raise _stale(fence)
        steps_left, run_status = done.steps_left, done.run_status
        map_parent, key, dependents = done.map_parent_id, done.concurrency_key, done.dependents
        claimed, committed = done.claimed, done.committed
        write_records(session, fence, records, now)
        # Its places in its key's and its tenant's slots are free: the oldest throttled
        # steps (of any run) go on.
        woken = make_room(session, key, done.tenant_id, done.tenant_quota, now)
    else:
        steps_left, run_status, map_parent, key = _record_success(
            session, fence, output, records, now
        )
        woken = freed(session, fence.run_id, key, now)
    if run_status not in ACTIVE_RUN:
        # Cancelled or failed meanwhile: start nothing.
        return Completion(woken, run_status, committed=committed)
    if records.usd():
        # The last step's completion finishes the run: nothing is left to pause.
        check_budgets(session, fence.run_id, now, may_pause=steps_left > 0)
    if dependents is None:
        released = release_dependents(session, fence.run_id, fence.step_id, now)
    else:
        released = released_from(session, fence.run_id, dependents, now)
    if map_parent is not None:
        released += release_element(session, fence.run_id, map_parent, now)
    if steps_left == 0:
        released += finish_run(session, fence.run_id, now, paused=run_status == RunStatus.PAUSED)
    released.messages += woken
    status = RunStatus.SUCCEEDED if released.finished else run_status
    return Completion(released.messages, status, claimed, committed)


def _stale(fence: Fence) -> StaleAttempt:
    return StaleAttempt(
        f"step {fence.step_id} attempt {fence.attempt} lost its lease; its result was not recorded"
    )


def _record_success(
    session: Session,
    fence: Fence,
    output: dict[str, Any] | BlobRef,
    records: Records,
    now: datetime,
) -> tuple[int, str, uuid.UUID | None, str | None]:
    """The fenced writes of a success as separate statements (what ``complete_pg`` does
    in one on PostgreSQL): ``(steps_left, run status, map step, concurrency key)`` after
    the run's counter moved (the map step: the one this step is an element of, if any)."""
    blob = output if isinstance(output, BlobRef) else None
    row = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(fence.where())
            .values(
                status=SUCCEED.target,
                output=None if blob else output,
                output_blob_key=blob.key if blob else None,
                output_sha256=blob.sha256 if blob else None,
                error=None,
                finished_at=now,
                **lease_cleared(),
            )
            .returning(
                WorkflowStep.map_parent_id,
                WorkflowStep.concurrency_key,
            )
        )
        .first()
    )
    if row is None:
        raise _stale(fence)
    map_parent, key = row
    usd = write_records(session, fence, records, now)
    add_event(
        session, fence.run_id, "complete_step", now, step_id=fence.step_id, attempt=fence.attempt
    )
    # Locks the run row until commit: completions of one run's steps finish one by one
    # from here, so exactly one of them sees steps_left reach 0.
    steps_left, run_status = (
        session.connection()
        .execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == fence.run_id)
            .values(
                steps_left=WorkflowRun.steps_left - 1,
                cost_usd=WorkflowRun.cost_usd + usd,
            )
            .returning(WorkflowRun.steps_left, WorkflowRun.status)
        )
        .one()
    )
    return int(steps_left), str(run_status), map_parent, key


def verify_completion(session: Session, fence: Fence) -> Completion | None:
    """The completion of the fenced attempt if it was committed; None if not.

    Resolves a completion whose COMMIT lost its connection: only this attempt can have
    moved the step to ``succeeded`` at this attempt number. The dependents it queued are
    returned to be sent (again: a duplicate message is dropped by the claim).
    """
    done = (
        session.connection()
        .execute(
            select(WorkflowStep.id).where(
                WorkflowStep.id == fence.step_id,
                WorkflowStep.attempt == fence.attempt,
                WorkflowStep.status == StepStatus.SUCCEEDED,
            )
        )
        .first()
    )
    if done is None:
        return None
    rows = (
        session.connection()
        .execute(
            select(*MESSAGE_COLUMNS).where(
                WorkflowStep.id.in_(
                    select(StepEdge.downstream_id).where(StepEdge.upstream_id == fence.step_id)
                ),
                WorkflowStep.status == StepStatus.QUEUED,
            )
        )
        .all()
    )
    run_status = session.connection().scalar(
        select(WorkflowRun.status).where(WorkflowRun.id == fence.run_id)
    )
    return Completion(to_messages(rows), str(run_status))
