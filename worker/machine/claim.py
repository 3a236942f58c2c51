"""claim_step: one guarded UPDATE moves a queued step to running under a lease.

The attempt number in the message must match the row: it is the fencing token. A message
for a step that is running, finished, cancelled or already past that attempt is refused
with :class:`StepNotClaimable` and nothing is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session

from db.models import Checkpoint, Tenant, WorkflowDefinition, WorkflowRun, WorkflowStep
from db.repositories.runs import upstream_outputs
from db.states import StepStatus
from worker.definitions.spec import RetryPolicy
from worker.errors import StepNotClaimable
from worker.machine import claim_pg
from worker.machine.concurrency import may_claim, slots_of
from worker.machine.events import add_event
from worker.machine.lease import Fence
from worker.machine.messages import StepMessage
from worker.machine.rollup import output_value
from worker.machine.transitions import CLAIM, START_RUN


@dataclass(frozen=True)
class ClaimedStep:
    """Everything an attempt needs to run, read in the claim's transaction."""

    fence: Fence
    tenant_id: uuid.UUID
    key: str
    task: str
    workflow: str
    inputs: dict[str, Any]
    resume_state: dict[str, Any] | None
    last_checkpoint_seq: int
    retry: RetryPolicy
    max_attempts: int
    #: Earlier attempts released for server faults: they do not count against the policy.
    server_releases: int
    #: Earlier attempts that ended waiting: they do not count either.
    wait_resumes: int
    #: The definition's approve gate, asked before the step's code runs.
    approve: dict[str, Any] | None
    #: Named rate limits taken (one request each) before the step's code runs.
    rate_limits: tuple[str, ...]
    #: The W3C trace context of the run (its attempt spans join that trace).
    trace_context: dict[str, Any] | None
    #: The run's status at the claim: a paused run's step waits for its new budget.
    run_status: str
    #: The run's steps not yet succeeded at the claim, this one included.
    run_steps_left: int
    #: In no map and under no concurrency key: its completion likely needs no statement
    #: but its own (the run's last step finishes the run in it too), so it is tried
    #: alone (its commit in its round trip, ``complete_pg``).
    plain: bool
    timeout_s: float | None
    queued_at: datetime | None
    started_at: datetime

    @classmethod
    def of(
        cls,
        fence: Fence,
        step: Any,
        run: tuple[dict[str, Any], str, uuid.UUID, str, dict[str, Any] | None, int],
        upstream: Iterable[Sequence[Any]],
        checkpoint: Sequence[Any] | None,
    ) -> ClaimedStep:
        """Build the claimed attempt from what the claim read: the step row (its columns
        by name), the run's ``(inputs, workflow name, tenant id, status, trace context,
        steps left)``, the upstream steps' ``(key, output, blob key, sha256)`` and the last
        ``(seq, state, blob key, sha256)``."""
        run_inputs, workflow, tenant_id, run_status, trace_context, steps_left = run
        return cls(
            fence=fence,
            tenant_id=tenant_id,
            key=step.key,
            task=step.task,
            workflow=workflow,
            # The step's own inputs (a fork's edits, a map element's item) win over all.
            inputs=dict(run_inputs)
            | {key: output_value(out, blob_key, sha) for key, out, blob_key, sha in upstream}
            | (step.step_inputs or {}),
            resume_state=output_value(*checkpoint[1:]) if checkpoint else None,
            last_checkpoint_seq=checkpoint[0] if checkpoint else 0,
            retry=RetryPolicy.model_validate(step.retry),
            max_attempts=step.max_attempts,
            server_releases=step.server_releases,
            wait_resumes=step.wait_resumes,
            approve=step.approve,
            rate_limits=tuple(step.rate_limits or ()),
            trace_context=trace_context,
            run_status=run_status,
            run_steps_left=steps_left,
            plain=bool(step.plain),
            timeout_s=step.timeout_s,
            queued_at=step.queued_at,
            started_at=step.started_at,
        )

    @property
    def own_attempt(self) -> int:
        """This attempt's number as the retry policy counts it (server faults and waits
        left out)."""
        return self.fence.attempt - self.server_releases - self.wait_resumes


@dataclass(frozen=True)
class Throttled:
    """The claim found the step's concurrency key at its limit: the step is throttled
    (committed with the claim's transaction); ``messages`` are older throttled steps of
    the key that fit in free slots, to send after the commit."""

    messages: list[StepMessage]


def claim_step(
    session: Session,
    step_id: uuid.UUID,
    attempt: int,
    owner: str,
    lease_s: float,
    now: datetime,
) -> ClaimedStep | Throttled:
    """Claim ``attempt`` of a queued step for ``owner`` until ``now + lease_s``.

    On PostgreSQL this is one round trip (``claim_pg``); on SQLite a few statements. A
    step with a concurrency key takes its key's slot first (``concurrency.may_claim``).
    """
    if session.connection().dialect.name == "postgresql":
        found = claim_pg.claim_row(session, step_id, attempt, owner, lease_s, now)
        if found is not None:
            fence = Fence(step_id, found.run_id, attempt, owner)
            run = (
                found.inputs,
                found.workflow,
                found.tenant_id,
                found.run_status,
                found.trace_context,
                found.run_steps_left,
            )
            return ClaimedStep.of(fence, found, run, found.upstream, found.checkpoint)
    else:
        claimed = _claim(session, step_id, attempt, owner, lease_s, now, unkeyed=True)
        if claimed is not None:
            return claimed
    limited = (
        session.connection()
        .execute(
            select(
                WorkflowStep.concurrency_key,
                WorkflowStep.concurrency_limit,
                WorkflowStep.queued_at,
                WorkflowRun.tenant_id,
            )
            .join(WorkflowRun, WorkflowRun.id == WorkflowStep.run_id)
            .where(WorkflowStep.id == step_id, CLAIM.guard(), WorkflowStep.attempt == attempt)
        )
        .first()
    )
    if limited is None:
        raise StepNotClaimable(_why_not(session, step_id, attempt))
    slots = slots_of(session, limited.concurrency_key, limited.tenant_id, limited.concurrency_limit)
    if not slots:  # in no slot, yet not claimed: it was not claimable
        raise StepNotClaimable(_why_not(session, step_id, attempt))
    free, messages = may_claim(session, step_id, slots, limited.queued_at, now)
    if not free:
        return Throttled(messages)
    claimed = _claim(session, step_id, attempt, owner, lease_s, now, unkeyed=False)
    assert claimed is not None  # queued at this attempt, under its key's lock
    # In a slot (its key's or its tenant's quota): its completion frees it, with a
    # statement of its own, so it is not tried alone.
    return replace(claimed, plain=False)


def _claim(
    session: Session,
    step_id: uuid.UUID,
    attempt: int,
    owner: str,
    lease_s: float,
    now: datetime,
    *,
    unkeyed: bool,
) -> ClaimedStep | None:
    """The claim as separate statements; None if the step was not claimable (or, with
    ``unkeyed``, has a concurrency key: its slot is taken first)."""
    guard = [WorkflowStep.id == step_id, CLAIM.guard(), WorkflowStep.attempt == attempt]
    if unkeyed:  # in no slot: no key, and its tenant has no quota
        guard.append(WorkflowStep.concurrency_key.is_(None))
        guard.append(
            ~exists().where(
                WorkflowRun.id == WorkflowStep.run_id,
                Tenant.id == WorkflowRun.tenant_id,
                Tenant.max_running_steps.is_not(None),
            )
        )
    row = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(*guard)
            .values(
                status=CLAIM.target,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                started_at=now,
                finished_at=None,
                cancel_requested=False,
            )
            .returning(WorkflowStep.run_id)
        )
        .first()
    )
    if row is None:
        return None
    session.connection().execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == row.run_id, START_RUN.guard())
        .values(status=START_RUN.target, started_at=now, updated_at=now)
    )
    add_event(
        session,
        row.run_id,
        "claim_step",
        now,
        step_id=step_id,
        attempt=attempt,
        data={"owner": owner},
    )
    claimed = verify_claim(session, step_id, attempt, owner)
    assert claimed is not None  # the row was claimed by this owner in this transaction
    return claimed


def verify_claim(
    session: Session, step_id: uuid.UUID, attempt: int, owner: str
) -> ClaimedStep | None:
    """The claimed attempt, read back, if ``owner`` holds it; None if not.

    Also what resolves a claim whose COMMIT lost its connection: the lease owner is the
    proof that the claim landed.
    """
    step = (
        session.connection()
        .execute(
            select(
                WorkflowStep.run_id,
                WorkflowStep.key,
                WorkflowStep.task,
                WorkflowStep.retry,
                WorkflowStep.max_attempts,
                WorkflowStep.server_releases,
                WorkflowStep.wait_resumes,
                WorkflowStep.approve,
                WorkflowStep.timeout_s,
                WorkflowStep.queued_at,
                WorkflowStep.started_at,
                WorkflowStep.inputs.label("step_inputs"),
                WorkflowStep.rate_limits,
                and_(  # claim_pg.PLAIN_STEP, as an expression
                    WorkflowStep.map_parent_id.is_(None), WorkflowStep.concurrency_key.is_(None)
                ).label("plain"),
            ).where(
                WorkflowStep.id == step_id,
                WorkflowStep.status == StepStatus.RUNNING,
                WorkflowStep.attempt == attempt,
                WorkflowStep.lease_owner == owner,
            )
        )
        .first()
    )
    if step is None:
        return None
    run_inputs, workflow, tenant_id, run_status, trace_context, steps_left = (
        session.connection()
        .execute(
            select(
                WorkflowRun.inputs,
                WorkflowDefinition.name,
                WorkflowRun.tenant_id,
                WorkflowRun.status,
                WorkflowRun.trace_context,
                WorkflowRun.steps_left,
            )
            .join(WorkflowDefinition, WorkflowDefinition.id == WorkflowRun.definition_id)
            .where(WorkflowRun.id == step.run_id)
        )
        .one()
    )
    upstream = session.connection().execute(upstream_outputs(step_id)).all()
    checkpoint = (
        session.connection()
        .execute(
            select(Checkpoint.seq, Checkpoint.state, Checkpoint.blob_key, Checkpoint.blob_sha256)
            .where(Checkpoint.step_id == step_id)
            .order_by(Checkpoint.seq.desc())
            .limit(1)
        )
        .first()
    )
    run = (run_inputs, workflow, tenant_id, run_status, trace_context, steps_left)
    fence = Fence(step_id, step.run_id, attempt, owner)
    return ClaimedStep.of(fence, step, run, upstream, checkpoint)


def _why_not(session: Session, step_id: uuid.UUID, attempt: int) -> str:
    found = (
        session.connection()
        .execute(
            select(WorkflowStep.status, WorkflowStep.attempt).where(WorkflowStep.id == step_id)
        )
        .first()
    )
    if found is None:
        return f"step {step_id} does not exist"
    status, current = found
    return f"step {step_id} attempt {attempt} is not claimable: it is {status} at attempt {current}"
