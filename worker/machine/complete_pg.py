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
Sent alone (the commit in its round trip), it locks the run row first of all and writes
only when it is the whole of its transaction (``alone`` in the SQL).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, Numeric, String, Uuid, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from db.prepared import Prepared
from db.types import JSONValue, UTCDateTime
from worker.blobs import BlobRef
from worker.ids import new_id
from worker.machine.claim import ClaimedStep
from worker.machine.claim_pg import CLAIMED_TYPES, LAST_CHECKPOINT, PLAIN_STEP, TENANT_QUOTA
from worker.machine.ending import (
    ACTIVE_RUN,
    FINISHES_IN_STATEMENT,
    OUTPUT_VALUE_SQL,
    SINK_STEP_SQL,
)
from worker.machine.lease import Fence, Inline
from worker.machine.transitions import CLAIM, FINISH_RUN, RELEASE, SUCCEED

# Statuses are bound, not spelled: they come from the transition values.
_SQL = """
WITH quota AS (
    {tenant_quota}
), ends AS (
    -- Whether this completion may finish the run, if it is the run's last step: no spend
    -- to weigh against the run's budgets first (:finish), no parent run to wake, and the
    -- statement's snapshot holds every other step's success. A completion that committed
    -- after the snapshot was taken, before the run row was locked, shows as a locked
    -- steps_left below the snapshot's: its output would be missed, and finish_run ends
    -- the run in a statement of its own (a new snapshot). The rest is read locked.
    SELECT 1 FROM workflow_runs r0
     WHERE :finish AND r0.id = :run_id AND r0.steps_left = 1 AND r0.parent_step_id IS NULL
), alone AS (
    -- With :alone the statement commits as it ends (Prepared.execute), so it writes only
    -- if no other statement must join it: the run active with other steps left, or
    -- this step its last and the run finished here too ("ends"); its row locked
    -- first, so a branch that completed meanwhile is counted; no quota on its tenant, no
    -- map step among the dependents. Else it writes nothing, and the caller runs it
    -- again in a transaction with what must follow.
    SELECT r.id FROM workflow_runs r
     WHERE :alone AND r.id = :run_id
       AND (r.steps_left > 1 AND r.status IN ({active})
            OR r.steps_left = 1 AND r.status IN ({finishing}) AND EXISTS (SELECT 1 FROM ends))
       AND NOT EXISTS (SELECT 1 FROM quota WHERE max_running_steps IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM step_edges e JOIN workflow_steps m ON m.id = e.downstream_id
                        WHERE e.upstream_id = :step_id AND m.map IS NOT NULL)
       FOR NO KEY UPDATE OF r
), done AS (
    UPDATE workflow_steps
       SET status = :target, output = :output, output_blob_key = :blob_key,
           output_sha256 = :blob_sha256, error = NULL, finished_at = :now,
           lease_owner = NULL, lease_expires_at = NULL
     WHERE id = :step_id AND attempt = :attempt AND lease_owner = :owner AND status = :source
       AND (NOT :alone OR ({done_plain} AND EXISTS (SELECT 1 FROM alone)))
 RETURNING key, map_parent_id, concurrency_key, output, output_blob_key, output_sha256
), finishing AS (
    SELECT 1 FROM ends, done WHERE done.map_parent_id IS NULL
), counted AS (
    -- The run's last step finishes the run here (see "ends"): its sink steps'
    -- outputs gathered, this step's from "done" (the snapshot has it unwritten), each as
    -- rollup.output_value gives it. Any other end is ending.finish_run's, after this.
    UPDATE workflow_runs
       SET steps_left = steps_left - 1, cost_usd = cost_usd + :usd,
           status = CASE WHEN steps_left = 1 AND status IN ({finishing})
                              AND EXISTS (SELECT 1 FROM finishing)
                              THEN :finish_target ELSE status END,
           finished_at = CASE WHEN steps_left = 1 AND status IN ({finishing})
                                   AND EXISTS (SELECT 1 FROM finishing)
                                   THEN :now ELSE finished_at END,
           updated_at = CASE WHEN steps_left = 1 AND status IN ({finishing})
                                  AND EXISTS (SELECT 1 FROM finishing)
                                  THEN :now ELSE updated_at END,
           outputs = CASE WHEN steps_left = 1 AND status IN ({finishing})
                           AND EXISTS (SELECT 1 FROM finishing) THEN (
               SELECT coalesce(jsonb_object_agg(o.key, o.value), '{{}}'::jsonb) FROM (
                   SELECT s.key, {output_value} AS value
                     FROM workflow_steps s
                    WHERE {sink} AND s.id <> :step_id
                   UNION ALL
                   SELECT s.key, {output_value} FROM done s
                    WHERE NOT EXISTS (SELECT 1 FROM step_edges e WHERE e.upstream_id = :step_id)
               ) o) ELSE outputs END
     WHERE id = :run_id AND EXISTS (SELECT 1 FROM done)
 RETURNING steps_left, status
), lone AS (
    -- The one dependent this worker may claim with the completion: the next link of a
    -- chain (this step's only dependent, and this step its only upstream), on the
    -- worker's queue, a task it has, in no concurrency slot and no tenant quota. Only
    -- columns that never change are read here: whether it is released now is decided
    -- on its locked row, in "released".
    -- Found by the primary key of this step's one edge, whatever the table's statistics
    -- (a join, planned on a new database's empty ones, scanned every step).
    SELECT s.id FROM workflow_steps s
     WHERE s.id = (SELECT CASE WHEN count(*) = 1 THEN (array_agg(o.downstream_id))[1] END
                     FROM step_edges o WHERE o.upstream_id = :step_id)
       AND :inline_owner IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM step_edges o
                        WHERE o.downstream_id = s.id AND o.upstream_id <> :step_id)
       AND s.map IS NULL AND s.concurrency_key IS NULL AND s.queue = :inline_queue
       AND s.task = ANY(:inline_tasks)
       AND NOT EXISTS (SELECT 1 FROM quota WHERE max_running_steps IS NOT NULL)
), released AS (
    UPDATE workflow_steps s
       SET pending_upstream = s.pending_upstream - 1,
           status = CASE WHEN s.pending_upstream = 1 AND s.map IS NULL
                         THEN CASE WHEN s.id = (SELECT id FROM lone)
                                   THEN :claim_target ELSE :release_target END
                         ELSE s.status END,
           attempt = CASE WHEN s.pending_upstream = 1 AND s.map IS NULL
                          THEN s.attempt + 1 ELSE s.attempt END,
           queued_at = CASE WHEN s.pending_upstream = 1 AND s.map IS NULL
                            THEN :now ELSE s.queued_at END,
           dispatched_at = CASE WHEN s.pending_upstream = 1 AND s.map IS NULL
                                THEN :now ELSE s.dispatched_at END,
           -- The claim's columns, on the claimed one only (CLAIM after RELEASE).
           lease_owner = CASE WHEN s.pending_upstream = 1 AND s.id = (SELECT id FROM lone)
                              THEN :inline_owner ELSE s.lease_owner END,
           lease_expires_at = CASE WHEN s.pending_upstream = 1 AND s.id = (SELECT id FROM lone)
                                   THEN :lease_until ELSE s.lease_expires_at END,
           started_at = CASE WHEN s.pending_upstream = 1 AND s.id = (SELECT id FROM lone)
                             THEN :now ELSE s.started_at END,
           finished_at = CASE WHEN s.pending_upstream = 1 AND s.id = (SELECT id FROM lone)
                              THEN NULL ELSE s.finished_at END,
           cancel_requested = CASE WHEN s.pending_upstream = 1 AND s.id = (SELECT id FROM lone)
                                   THEN false ELSE s.cancel_requested END
     WHERE s.id IN (SELECT downstream_id FROM step_edges WHERE upstream_id = :step_id)
       AND s.status = :release_source
       AND EXISTS (SELECT 1 FROM counted WHERE counted.status IN ({active}))
 RETURNING s.id, s.attempt, s.run_id, s.key, s.task, s.queue, s.priority, s.status,
           s.pending_upstream, s.map, s.retry, s.max_attempts, s.server_releases,
           s.wait_resumes, s.timeout_s, s.queued_at, s.started_at, s.approve,
           s.inputs, s.rate_limits,
           {released_plain} AS plain
), logged AS (
    INSERT INTO run_events (id, run_id, kind, step_id, attempt, data, created_at)
    SELECT :event_id, :run_id, 'complete_step', :step_id, :attempt, NULL, :now FROM done
     UNION ALL
    SELECT :claim_event_id, :run_id, 'claim_step', r.id, r.attempt, :claim_event_data, :now
      FROM released r WHERE r.status = :claim_target
     UNION ALL
    SELECT :finish_event_id, :run_id, 'finish_run', NULL, NULL, :finish_event_data, :now
      FROM counted c WHERE c.steps_left = 0 AND c.status = :finish_target
 RETURNING id
)
SELECT c.steps_left, c.status, (SELECT map_parent_id FROM done) AS map_parent_id,
       (SELECT concurrency_key FROM done) AS concurrency_key,
       (SELECT tenant_id FROM quota) AS run_tenant_id,
       (SELECT max_running_steps FROM quota) AS tenant_quota,
       (SELECT key FROM done) AS done_key,
       (SELECT count(*) FROM logged) AS logged,
       r.id AS r_id, r.attempt AS r_attempt, r.run_id AS r_run_id, r.key AS key,
       r.task AS task, r.queue AS r_queue, r.priority AS r_priority,
       r.status AS r_status, r.pending_upstream AS r_pending, r.map AS r_map,
       r.retry, r.max_attempts, r.server_releases, r.wait_resumes, r.timeout_s,
       r.queued_at, r.started_at, r.approve, r.inputs AS step_inputs, r.rate_limits, r.plain,
       ru.inputs AS run_inputs, ru.tenant_id, ru.trace_context, d.name AS workflow,
       CASE WHEN r.status = :claim_target THEN (SELECT output FROM done) END AS done_output,
       CASE WHEN r.status = :claim_target THEN {last_checkpoint} END AS checkpoint
  FROM counted c LEFT JOIN released r ON true
  LEFT JOIN workflow_runs ru ON ru.id = r.run_id AND r.status = :claim_target
  LEFT JOIN workflow_definitions d ON d.id = ru.definition_id
"""

_ACTIVE = ", ".join(f"'{status.value}'" for status in ACTIVE_RUN)
_STATEMENT = (
    text(
        _SQL.format(
            active=_ACTIVE,
            tenant_quota=TENANT_QUOTA.format(run=":run_id"),
            last_checkpoint=LAST_CHECKPOINT.format(step="r.id"),
            done_plain=PLAIN_STEP.format(step="workflow_steps"),
            released_plain=PLAIN_STEP.format(step="s"),
            finishing=", ".join(f"'{status.value}'" for status in FINISHES_IN_STATEMENT),
            output_value=OUTPUT_VALUE_SQL,
            sink=SINK_STEP_SQL,
        )
    )
    .bindparams(
        bindparam("step_id", type_=Uuid()),
        bindparam("source", type_=String()),
        bindparam("target", type_=String()),
        bindparam("release_source", type_=String()),
        bindparam("release_target", type_=String()),
        bindparam("claim_target", type_=String()),
        bindparam("run_id", type_=Uuid()),
        bindparam("event_id", type_=Uuid()),
        bindparam("claim_event_id", type_=Uuid()),
        bindparam("claim_event_data", type_=JSONValue),
        bindparam("attempt", type_=Integer()),
        bindparam("owner", type_=String()),
        bindparam("inline_owner", type_=String()),
        bindparam("inline_queue", type_=String()),
        bindparam("inline_tasks", type_=ARRAY(String())),
        bindparam("lease_until", type_=UTCDateTime()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("output", type_=JSONValue),
        bindparam("blob_key", type_=String()),
        bindparam("blob_sha256", type_=String()),
        bindparam("usd", type_=Numeric(20, 8)),
        bindparam("alone", type_=Boolean()),
        bindparam("finish", type_=Boolean()),
        bindparam("finish_target", type_=String()),
        bindparam("finish_event_id", type_=Uuid()),
        bindparam("finish_event_data", type_=JSONValue),
    )
    .columns(
        map_parent_id=Uuid(),
        run_tenant_id=Uuid(),
        r_id=Uuid(),
        r_run_id=Uuid(),
        run_inputs=JSON(),
        done_output=JSON(),
        **CLAIMED_TYPES,
    )
)
STATEMENT = Prepared(_STATEMENT)


@dataclass(frozen=True)
class Completed:
    """What the statement wrote: the run's counter and status after it, the step's map
    step and concurrency key, the run's tenant and its quota of running steps, the
    dependents it counted off (rows shaped as ``release.release_dependents`` returns
    them), and the dependent it claimed."""

    steps_left: int
    run_status: str
    map_parent_id: uuid.UUID | None
    concurrency_key: str | None
    tenant_id: uuid.UUID
    tenant_quota: int | None
    dependents: list[tuple[Any, ...]]
    claimed: ClaimedStep | None
    #: Committed by the statement itself (sent alone): nothing may be written after it.
    committed: bool = False


def complete_row(
    session: Session,
    fence: Fence,
    output: dict[str, Any] | BlobRef,
    usd: Decimal,
    now: datetime,
    inline: Inline | None = None,
    *,
    alone: bool = False,
) -> Completed | None:
    """Run the one-statement completion; None when the attempt no longer holds its lease
    (nothing was written). With ``inline``, the next link of a chain it releases is
    claimed for ``inline.owner`` in the same statement.

    ``alone`` (where ``db.prepared.sends_alone``): the statement is sent as its own
    transaction, committed in its one round trip, and writes only if no other statement
    must go with it (see ``alone`` in the SQL); None then also means it wrote nothing
    because one must: run it again without.
    """
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
            "claim_target": CLAIM.target.value,
            "claim_event_id": new_id(),
            "claim_event_data": {"owner": inline.owner} if inline else None,
            "inline_owner": inline.owner if inline else None,
            "inline_queue": inline.queue if inline else None,
            "inline_tasks": list(inline.tasks) if inline else [],
            "lease_until": now + timedelta(seconds=inline.lease_s) if inline else None,
            "alone": alone,
            # With no spend to weigh against the run's budgets first (complete_step), the
            # run's last step finishes a plain run in this statement.
            "finish": not usd,
            "finish_target": FINISH_RUN.target.value,
            # Made after the completion's own: events sort by id.
            "finish_event_id": new_id(),
            "finish_event_data": {"status": FINISH_RUN.target.value},
        },
        alone=alone,
    )
    if not rows:
        return None
    first = rows[0]
    claimed = None
    dependents = []
    for r in rows:
        if r.r_id is None:
            continue
        dependents.append(
            (
                r.r_id,
                r.r_attempt,
                r.r_run_id,
                r.key,
                r.task,
                r.r_queue,
                r.r_priority,
                r.r_status,
                r.r_pending,
                r.r_map,
            )
        )
        if r.r_status == CLAIM.target and inline is not None:
            next_fence = Fence(r.r_id, fence.run_id, r.r_attempt, inline.owner)
            run = (
                r.run_inputs,
                r.workflow,
                r.tenant_id,
                str(first.status),
                r.trace_context,
                int(first.steps_left),
            )
            # Its one upstream is this step (not in the statement's snapshot yet), its
            # output as stored: what a claim reading it back would pass on.
            upstream = [(first.done_key, r.done_output, *_blob_fields(blob))]
            claimed = ClaimedStep.of(next_fence, r, run, upstream, r.checkpoint)
    return Completed(
        steps_left=int(first.steps_left),
        run_status=str(first.status),
        map_parent_id=first.map_parent_id,
        concurrency_key=first.concurrency_key,
        tenant_id=first.run_tenant_id,
        tenant_quota=None if first.tenant_quota is None else int(first.tenant_quota),
        dependents=dependents,
        claimed=claimed,
        committed=alone,
    )


def _blob_fields(blob: BlobRef | None) -> tuple[str | None, str | None]:
    return (blob.key, blob.sha256) if blob else (None, None)
