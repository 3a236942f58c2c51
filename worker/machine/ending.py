"""A run ends early: failed by a step, or cancelled; what has not started is cancelled."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Uuid, bindparam, exists, select, text, update
from sqlalchemy.orm import Session

from db.models import ApprovalRequest, StepEdge, WorkflowRun, WorkflowStep
from db.prepared import Prepared
from db.states import ApprovalStatus, RunStatus, StepStatus
from db.types import JSONValue, UTCDateTime
from worker import blobs
from worker.ids import new_id
from worker.machine.events import add_event
from worker.machine.messages import Released
from worker.machine.rollup import output_value
from worker.machine.transitions import CANCEL_NOT_STARTED, CANCEL_RUN, FAIL_RUN, FINISH_RUN
from worker.machine.waits import child_end, drop_run_waits, wake_parent

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
    # Children first: a child finishing at this moment holds its run row and then wakes
    # a step of this run; taking the child rows before this run's step rows cannot
    # deadlock with it.
    cancel_children(session, run_id, now)
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


def cancel_children(session: Session, run_id: uuid.UUID, now: datetime) -> None:
    """A parent run ended early: its child runs still going are cancelled (and theirs).

    The parent waiting on a child is woken by beat's timer (``tick_waits``), which
    resolves child waits whose child ended; here the parent is ending anyway.
    """
    children = session.connection().scalars(
        select(WorkflowRun.id).where(
            WorkflowRun.parent_run_id == run_id,
            WorkflowRun.parent_step_id.is_not(None),
            CANCEL_RUN.guard(),
        )
    )
    for child in list(children):
        end_run(
            session,
            child,
            RunStatus.CANCELLED,
            now,
            kind="cancel_run",
            error={"type": "RunCancelled", "message": f"its parent run {run_id} ended"},
        )


def _sink_outputs_statement() -> Any:
    """The outputs of a run's sink steps (none comes after them), built once."""
    step = WorkflowStep
    return select(step.key, step.output, step.output_blob_key, step.output_sha256).where(
        step.run_id == bindparam("run_id", type_=Uuid()),
        step.map_parent_id.is_(None),  # a map's elements: its map step stands for them
        ~exists().where(StepEdge.upstream_id == step.id),
    )


def _finish_statement() -> Any:
    """The guarded move of a run to succeeded, with its outputs, built once."""
    now = bindparam("now", type_=UTCDateTime())
    return (
        update(WorkflowRun)
        .where(WorkflowRun.id == bindparam("run_id", type_=Uuid()), FINISH_RUN.guard())
        .values(
            status=FINISH_RUN.target,
            outputs=bindparam("outputs", type_=WorkflowRun.outputs.type),
            finished_at=now,
            updated_at=now,
        )
        .returning(WorkflowRun.parent_run_id, WorkflowRun.parent_step_id)
    )


_SINK_OUTPUTS = _sink_outputs_statement()
_FINISH = _finish_statement()

#: A step row ``s``'s output as a run's outputs hold it (``rollup.output_value`` in SQL):
#: inline, or the marker of its stored blob.
OUTPUT_VALUE_SQL = (
    "CASE WHEN s.output_blob_key IS NOT NULL AND s.output_sha256 IS NOT NULL "
    f"THEN jsonb_build_object('{blobs.MARKER}', s.output_blob_key, 'sha256', s.output_sha256) "
    "ELSE s.output END"
)
#: The step row ``s`` is one of run ``:run_id``'s sinks, whose outputs are the run's
#: (nothing comes after it; a map's elements are not: their map step stands for them).
SINK_STEP_SQL = (
    "s.run_id = :run_id AND s.map_parent_id IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM step_edges e WHERE e.upstream_id = s.id)"
)
#: A run whose last step just succeeded that the completion's own statement finishes
#: (complete_pg) is in one of these: not paused (finish_run closes its budget request).
#: Nor a child run (finish_run wakes its parent): complete_pg checks that itself.
FINISHES_IN_STATEMENT = (RunStatus.QUEUED, RunStatus.RUNNING)

# The same finish in one round trip on PostgreSQL: the sink steps' outputs gathered
# (each as ``rollup.output_value`` gives it: inline, or the marker of its stored blob),
# the guarded move and the event, as one statement. Every run's end runs it but that of a
# run its last step's completion finishes itself (complete_pg).
_FINISH_PG_SQL = """
WITH finished AS (
    UPDATE workflow_runs
       SET status = :target, finished_at = :now, updated_at = :now,
           outputs = (
               SELECT coalesce(jsonb_object_agg(s.key, {output_value}), '{{}}'::jsonb)
                 FROM workflow_steps s WHERE {sink})
     WHERE id = :run_id AND status IN ({sources})
 RETURNING parent_run_id, parent_step_id, outputs
), logged AS (
    INSERT INTO run_events (id, run_id, kind, step_id, attempt, data, created_at)
    VALUES (:event_id, :run_id, 'finish_run', NULL, NULL, :event_data, :now)
 RETURNING id
)
SELECT f.parent_run_id, f.parent_step_id, f.outputs, (SELECT count(*) FROM logged) AS logged
  FROM (SELECT 1) AS one LEFT JOIN finished f ON true
"""
_FINISH_PG = Prepared(
    text(
        _FINISH_PG_SQL.format(
            output_value=OUTPUT_VALUE_SQL,
            sink=SINK_STEP_SQL,
            sources=", ".join(f"'{s.value}'" for s in FINISH_RUN.sources),
        )
    )
    .bindparams(
        bindparam("run_id", type_=Uuid()),
        bindparam("event_id", type_=Uuid()),
        bindparam("target", type_=String()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("event_data", type_=JSONValue),
    )
    .columns(parent_run_id=Uuid(), parent_step_id=Uuid(), outputs=JSON())
)


def finish_run(session: Session, run_id: uuid.UUID, now: datetime, *, paused: bool) -> Released:
    """Its last step succeeded: the run succeeds with its sink steps' outputs; a parent
    step waiting for it (a child run) is woken in the same transaction."""
    conn = session.connection()
    finished: Any
    if conn.dialect.name == "postgresql":
        finished = _FINISH_PG.execute(
            conn,
            {
                "run_id": run_id,
                "event_id": new_id(),
                "target": FINISH_RUN.target.value,
                "now": now,
                "event_data": {"status": "succeeded"},
            },
        )[0]
        outputs = finished.outputs
        if finished.outputs is None:  # the guard refused: the run had ended
            finished = None
    else:
        outputs = {
            key: output_value(output, blob_key, sha)
            for key, output, blob_key, sha in conn.execute(_SINK_OUTPUTS, {"run_id": run_id})
        }
        finished = conn.execute(_FINISH, {"run_id": run_id, "outputs": outputs, "now": now}).first()
        add_event(session, run_id, "finish_run", now, data={"status": "succeeded"})
    if paused:
        # Every step succeeded, so none waits and no step's request is pending: only the
        # budget request of a run paused while its last steps ran is left to cancel.
        close_waits(session, run_id, now, "finish_run")
    messages = []
    if finished is not None and finished.parent_step_id is not None:
        result = child_end(RunStatus.SUCCEEDED, outputs, None)
        messages = wake_parent(session, finished.parent_run_id, run_id, result, now)
    return Released(messages, finished=True)


def close_waits(session: Session, run_id: uuid.UUID, now: datetime, why: str) -> None:
    """A run ended: nothing waits for a decision or a signal of it any more (its waits are
    forgotten, so a retry of the run waits anew), and its pending requests are cancelled."""
    drop_run_waits(session, run_id)
    session.connection().execute(
        update(ApprovalRequest)
        .where(ApprovalRequest.run_id == run_id, ApprovalRequest.status == ApprovalStatus.PENDING)
        .values(status=ApprovalStatus.CANCELLED, decided_at=now, decided_by=f"cairn ({why})")
    )
