"""The completion in ONE round trip on PostgreSQL: the step's success, the event, the
run's counter and spend, and the release of its dependents, as one statement
of data-modifying CTEs. Prebuilt once: no statement is constructed or cache-keyed per step.

It is the core of :func:`worker.machine.complete.complete_step` (SQLite runs the same
writes as separate statements in the same transaction, ``release.release_dependents``
last). Order matters and is forced by data: the run's counter reads ``done`` and the
release reads ``counted``, so the run row is locked before any dependent, as in the
statement-by-statement version; the completions of one run go one by one from there,
exactly one sees ``steps_left`` at 0, and exactly one takes a join's count to 0.
Dependents are released only while the run is active (not cancelled or failed meanwhile).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, Numeric, String, Uuid, bindparam, text
from sqlalchemy.orm import Session

from db.prepared import Prepared
from db.types import JSONValue, UTCDateTime
from worker.blobs import BlobRef
from worker.ids import new_id
from worker.machine.ending import ACTIVE_RUN
from worker.machine.lease import Fence
from worker.machine.transitions import RELEASE, SUCCEED

# Statuses are bound, not spelled: they come from the transition values.
_SQL = """
WITH done AS (
    UPDATE workflow_steps
       SET status = :target, output = :output, output_blob_key = :blob_key,
           output_sha256 = :blob_sha256, error = NULL, finished_at = :now,
           lease_owner = NULL, lease_expires_at = NULL
     WHERE id = :step_id AND attempt = :attempt AND lease_owner = :owner AND status = :source
 RETURNING map_parent_id, concurrency_key
), logged AS (
    INSERT INTO run_events (id, run_id, kind, step_id, attempt, data, created_at)
    SELECT :event_id, :run_id, 'complete_step', :step_id, :attempt, NULL, :now FROM done
 RETURNING id
), counted AS (
    UPDATE workflow_runs
       SET steps_left = steps_left - 1, cost_usd = cost_usd + :usd
     WHERE id = :run_id AND EXISTS (SELECT 1 FROM done)
 RETURNING steps_left, status
), released AS (
    UPDATE workflow_steps s
       SET pending_upstream = s.pending_upstream - 1,
           status = CASE WHEN s.pending_upstream = 1 AND s.map IS NULL
                         THEN :release_target ELSE s.status END,
           attempt = CASE WHEN s.pending_upstream = 1 AND s.map IS NULL
                          THEN s.attempt + 1 ELSE s.attempt END,
           queued_at = CASE WHEN s.pending_upstream = 1 AND s.map IS NULL
                            THEN :now ELSE s.queued_at END,
           dispatched_at = CASE WHEN s.pending_upstream = 1 AND s.map IS NULL
                                THEN :now ELSE s.dispatched_at END
     WHERE s.id IN (SELECT downstream_id FROM step_edges WHERE upstream_id = :step_id)
       AND s.status = :release_source
       AND EXISTS (SELECT 1 FROM counted WHERE counted.status IN ({active}))
 RETURNING s.id, s.attempt, s.run_id, s.key, s.task, s.queue, s.priority, s.status,
           s.pending_upstream, s.map
)
SELECT c.steps_left, c.status, (SELECT map_parent_id FROM done) AS map_parent_id,
       (SELECT concurrency_key FROM done) AS concurrency_key,
       (SELECT count(*) FROM logged) AS logged,
       r.id AS r_id, r.attempt AS r_attempt, r.run_id AS r_run_id, r.key AS r_key,
       r.task AS r_task, r.queue AS r_queue, r.priority AS r_priority,
       r.status AS r_status, r.pending_upstream AS r_pending, r.map AS r_map
  FROM counted c LEFT JOIN released r ON true
"""

_ACTIVE = ", ".join(f"'{status.value}'" for status in ACTIVE_RUN)
_STATEMENT = (
    text(_SQL.format(active=_ACTIVE))
    .bindparams(
        bindparam("step_id", type_=Uuid()),
        bindparam("source", type_=String()),
        bindparam("target", type_=String()),
        bindparam("release_source", type_=String()),
        bindparam("release_target", type_=String()),
        bindparam("run_id", type_=Uuid()),
        bindparam("event_id", type_=Uuid()),
        bindparam("attempt", type_=Integer()),
        bindparam("owner", type_=String()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("output", type_=JSONValue),
        bindparam("blob_key", type_=String()),
        bindparam("blob_sha256", type_=String()),
        bindparam("usd", type_=Numeric(20, 8)),
    )
    .columns(map_parent_id=Uuid(), r_id=Uuid(), r_run_id=Uuid())
)
STATEMENT = Prepared(_STATEMENT)


@dataclass(frozen=True)
class Completed:
    """What the statement wrote: the run's counter and status after it, the step's map
    step and concurrency key, and the dependents it counted off (rows shaped as
    ``release.release_dependents`` returns them)."""

    steps_left: int
    run_status: str
    map_parent_id: uuid.UUID | None
    concurrency_key: str | None
    dependents: list[tuple[Any, ...]]


def complete_row(
    session: Session,
    fence: Fence,
    output: dict[str, Any] | BlobRef,
    usd: Decimal,
    now: datetime,
) -> Completed | None:
    """Run the one-statement completion; None when the attempt no longer holds its lease
    (nothing was written)."""
    blob = output if isinstance(output, BlobRef) else None
    rows = STATEMENT.execute(
        session.connection(),
        {
            "step_id": fence.step_id,
            "run_id": fence.run_id,
            "attempt": fence.attempt,
            "owner": fence.owner,
            "now": now,
            "output": None if blob else output,
            "blob_key": blob.key if blob else None,
            "blob_sha256": blob.sha256 if blob else None,
            "usd": usd,
            "event_id": new_id(),
            "source": SUCCEED.sources[0].value,
            "target": SUCCEED.target.value,
            "release_source": RELEASE.sources[0].value,
            "release_target": RELEASE.target.value,
        },
    ).all()
    if not rows:
        return None
    first = rows[0]
    return Completed(
        steps_left=int(first.steps_left),
        run_status=str(first.status),
        map_parent_id=first.map_parent_id,
        concurrency_key=first.concurrency_key,
        dependents=[
            (
                r.r_id,
                r.r_attempt,
                r.r_run_id,
                r.r_key,
                r.r_task,
                r.r_queue,
                r.r_priority,
                r.r_status,
                r.r_pending,
                r.r_map,
            )
            for r in rows
            if r.r_id is not None
        ],
    )
