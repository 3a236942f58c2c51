"""The claim in ONE round trip on PostgreSQL: the guarded UPDATE, the run's start, the
event and every read the attempt needs, as one statement of data-modifying CTEs.

The statement is the same verb as :func:`worker.machine.claim.claim_step` (SQLite runs
that one, a few statements in one transaction); its guard and target come from
``transitions.CLAIM`` and ``transitions.START_RUN`` like every verb's.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Integer, String, Uuid, bindparam, text
from sqlalchemy.orm import Session

from db.prepared import Prepared
from db.types import JSONValue, UTCDateTime
from worker.ids import new_id
from worker.machine.transitions import CLAIM, START_RUN

#: The run's tenant and its quota of running steps (NULL: none); ``{run}`` is the run
#: id's SQL. ``complete_pg`` reads it once, for its claim-next part and its result.
TENANT_QUOTA = (
    "SELECT qt.id AS tenant_id, qt.max_running_steps FROM workflow_runs qr"
    " JOIN tenants qt ON qt.id = qr.tenant_id WHERE qr.id = {run}"
)
#: The run's tenant has no quota (a step under one takes its slot first, in
#: ``concurrency.py``).
NO_QUOTA = f"NOT EXISTS ({TENANT_QUOTA} AND qt.max_running_steps IS NOT NULL)"
#: The step's last checkpoint as ``[seq, state, blob key, sha256]``; ``{step}`` is the
#: step id's SQL (``ClaimedStep.of`` reads it, from this claim or from ``complete_pg``).
LAST_CHECKPOINT = (
    "(SELECT jsonb_build_array(k.seq, k.state, k.blob_key, k.blob_sha256)"
    " FROM checkpoints k WHERE k.step_id = {step} ORDER BY k.seq DESC LIMIT 1)"
)

#: The step row ``{step}`` is in no map and under no concurrency key: its completion
#: likely needs no statement but its own, so it is tried alone (``ClaimedStep.plain``;
#: ``complete_pg`` writes alone only for such a step).
PLAIN_STEP = "{step}.map_parent_id IS NULL AND {step}.concurrency_key IS NULL"

# Statuses are bound, not spelled: they come from the transition values.
_SQL = """
WITH claimed AS (
    UPDATE workflow_steps
       SET status = :claim_target, lease_owner = :owner, lease_expires_at = :lease_until,
           started_at = :now, finished_at = NULL, cancel_requested = false
     WHERE id = :step_id AND status = :claim_source AND attempt = :attempt
       AND concurrency_key IS NULL
       AND {no_quota}
 RETURNING id, run_id, key, task, retry, max_attempts, server_releases, wait_resumes,
           timeout_s, queued_at, started_at, approve, inputs AS step_inputs, rate_limits,
           {plain} AS plain
), started AS (
    UPDATE workflow_runs
       SET status = :start_target, started_at = :now, updated_at = :now
     WHERE id = (SELECT run_id FROM claimed) AND status = :start_source
 RETURNING id
), logged AS (
    INSERT INTO run_events (id, run_id, kind, step_id, attempt, data, created_at)
    SELECT :event_id, run_id, 'claim_step', id, :attempt, :event_data, :now FROM claimed
 RETURNING id
)
SELECT c.run_id, c.key, c.task, c.retry, c.max_attempts, c.server_releases, c.wait_resumes,
       c.timeout_s, c.queued_at, c.started_at, c.approve, c.step_inputs, c.rate_limits, c.plain,
       r.inputs, r.tenant_id, r.trace_context,
       r.status AS run_status, r.steps_left AS run_steps_left, d.name AS workflow,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(u.key, u.output, u.output_blob_key,
                                                    u.output_sha256)), '[]'::jsonb)
          FROM step_edges e JOIN workflow_steps u ON u.id = e.upstream_id
         WHERE e.downstream_id = c.id) AS upstream,
       {last_checkpoint} AS checkpoint,
       (SELECT count(*) FROM logged) AS logged
  FROM claimed c
  JOIN workflow_runs r ON r.id = c.run_id
  JOIN workflow_definitions d ON d.id = r.definition_id
"""

#: The types of the columns a claim returns for ``ClaimedStep.of`` (by name; the
#: completion's statement, which claims the next link of a chain, returns them too).
CLAIMED_TYPES: dict[str, Any] = {
    "tenant_id": Uuid(),
    "queued_at": UTCDateTime(),
    "started_at": UTCDateTime(),
    "retry": JSON(),
    "approve": JSON(),
    "step_inputs": JSON(),
    "rate_limits": JSON(),
    "trace_context": JSON(),
    "checkpoint": JSON(),
}

_STATEMENT = (
    text(
        _SQL.format(
            no_quota=NO_QUOTA.format(run="workflow_steps.run_id"),
            last_checkpoint=LAST_CHECKPOINT.format(step="c.id"),
            plain=PLAIN_STEP.format(step="workflow_steps"),
        )
    )
    .bindparams(
        bindparam("step_id", type_=Uuid()),
        bindparam("claim_source", type_=String()),
        bindparam("claim_target", type_=String()),
        bindparam("start_source", type_=String()),
        bindparam("start_target", type_=String()),
        bindparam("event_id", type_=Uuid()),
        bindparam("attempt", type_=Integer()),
        bindparam("owner", type_=String()),
        bindparam("lease_until", type_=UTCDateTime()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("event_data", type_=JSONValue),
    )
    .columns(run_id=Uuid(), inputs=JSON(), upstream=JSON(), **CLAIMED_TYPES)
)
STATEMENT = Prepared(_STATEMENT)


def claim_row(
    session: Session, step_id: uuid.UUID, attempt: int, owner: str, lease_s: float, now: datetime
) -> Any:
    """Run the one-statement claim; the row, or None when the step was not claimable.

    It goes alone (``Prepared.execute``): a claim that took the step is the whole of its
    transaction, committed in its one round trip; one that did not wrote nothing, and
    what ``claim_step`` reads and writes next runs in a transaction of its own.
    """
    rows = STATEMENT.execute(
        session.connection(),
        {
            "step_id": step_id,
            "attempt": attempt,
            "owner": owner,
            "lease_until": now + timedelta(seconds=lease_s),
            "now": now,
            "event_id": new_id(),
            "event_data": {"owner": owner},
            "claim_source": CLAIM.sources[0].value,
            "claim_target": CLAIM.target.value,
            "start_source": START_RUN.sources[0].value,
            "start_target": START_RUN.target.value,
        },
        alone=True,
    )
    return rows[0] if rows else None
