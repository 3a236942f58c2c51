"""The completion's fenced writes in ONE round trip on PostgreSQL: the step's success, its
metrics, the event and the run's counter and spend, as one statement of data-modifying
CTEs. Prebuilt once: no statement is constructed or cache-keyed per step.

It is the first part of :func:`worker.machine.complete.complete_step` (SQLite runs the
same writes as separate statements in the same transaction). The release of dependents
stays a second statement: it runs after this one has locked the run row, so that the
completions of one run go one by one from there and exactly one sees ``steps_left`` at 0.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, Numeric, String, Uuid, bindparam, text
from sqlalchemy.orm import Session

from db.types import JSONValue, UTCDateTime
from worker.blobs import BlobRef
from worker.ids import new_id
from worker.machine.lease import Fence
from worker.machine.transitions import SUCCEED

# Statuses are bound, not spelled: they come from the transition values.
_SQL = """
WITH done AS (
    UPDATE workflow_steps
       SET status = :target, output = :output, output_blob_key = :blob_key,
           output_sha256 = :blob_sha256, error = NULL, finished_at = :now,
           lease_owner = NULL, lease_expires_at = NULL
     WHERE id = :step_id AND attempt = :attempt AND lease_owner = :owner AND status = :source
 RETURNING started_at, queued_at, map_parent_id, concurrency_key
), measured AS (
    INSERT INTO workflow_metrics (id, run_id, step_id, attempt, name, value, created_at)
    SELECT :duration_id, :run_id, :step_id, :attempt, 'duration_s',
           EXTRACT(EPOCH FROM (:now - coalesce(started_at, :now)))::float8, :now FROM done
    UNION ALL
    SELECT :wait_id, :run_id, :step_id, :attempt, 'queue_wait_s',
           EXTRACT(EPOCH FROM (started_at - queued_at))::float8, :now
      FROM done WHERE queued_at IS NOT NULL AND started_at IS NOT NULL
 RETURNING id
), logged AS (
    INSERT INTO run_events (id, run_id, kind, step_id, attempt, data, created_at)
    SELECT :event_id, :run_id, 'complete_step', :step_id, :attempt, NULL, :now FROM done
 RETURNING id
), counted AS (
    UPDATE workflow_runs
       SET steps_left = steps_left - 1, cost_usd = cost_usd + :usd, updated_at = :now
     WHERE id = :run_id AND EXISTS (SELECT 1 FROM done)
 RETURNING steps_left, status
)
SELECT c.steps_left, c.status, (SELECT map_parent_id FROM done) AS map_parent_id,
       (SELECT concurrency_key FROM done) AS concurrency_key,
       (SELECT count(*) FROM measured) AS measured, (SELECT count(*) FROM logged) AS logged
  FROM counted c
"""

STATEMENT = (
    text(_SQL)
    .bindparams(
        bindparam("step_id", type_=Uuid()),
        bindparam("run_id", type_=Uuid()),
        bindparam("duration_id", type_=Uuid()),
        bindparam("wait_id", type_=Uuid()),
        bindparam("event_id", type_=Uuid()),
        bindparam("attempt", type_=Integer()),
        bindparam("owner", type_=String()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("output", type_=JSONValue),
        bindparam("blob_key", type_=String()),
        bindparam("blob_sha256", type_=String()),
        bindparam("usd", type_=Numeric(20, 8)),
    )
    .columns(map_parent_id=Uuid())
)


def complete_row(
    session: Session,
    fence: Fence,
    output: dict[str, Any] | BlobRef,
    usd: Decimal,
    now: datetime,
) -> Any:
    """Run the one-statement completion: ``(steps_left, run status)``, or None when the
    attempt no longer holds its lease (nothing was written)."""
    blob = output if isinstance(output, BlobRef) else None
    return (
        session.connection()
        .execute(
            STATEMENT,
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
                "duration_id": new_id(),
                "wait_id": new_id(),
                "event_id": new_id(),
                "source": SUCCEED.sources[0].value,
                "target": SUCCEED.target.value,
            },
        )
        .first()
    )
