"""Inline continuation: a completion that releases exactly one dependent this worker can
run claims it in the SAME transaction, and the worker runs it at once, with no broker hop.

The claim is the ordinary fenced claim under a new lease owner, so a crash between the
two steps is recovered the ordinary way (the lease expires, the reaper queues the step
again). Fan-out still goes through the broker, so other workers share it. A completion
that committed itself (sent alone, ``complete_pg``) claims only what its own statement
claimed, the next link of a chain; anything else it released (a join, a keyed step)
goes by the broker: no write may follow a statement that committed itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import WorkflowStep
from db.states import StepStatus
from worker.blobs import BlobRef
from worker.machine.claim import ClaimedStep, Throttled, claim_step, verify_claim
from worker.machine.complete import Completion, complete_step, verify_completion
from worker.machine.lease import Fence, Inline
from worker.machine.records import Records


@dataclass(frozen=True)
class Continued:
    """A completion, and the dependent this worker claimed to run next (if any)."""

    completion: Completion
    next: ClaimedStep | None


def complete_and_continue(
    session: Session,
    fence: Fence,
    output: dict[str, Any] | BlobRef,
    records: Records,
    now: datetime,
    inline: Inline | None,
    *,
    try_alone: bool = False,
) -> Continued:
    """Record the attempt's success; claim its one released dependent when it fits.

    ``try_alone``: as :func:`complete_step` takes it.
    """
    completion = complete_step(session, fence, output, records, now, inline, try_alone=try_alone)
    if completion.claimed is not None:  # claimed by the completion's own statement
        return Continued(completion, completion.claimed)
    if inline is None or completion.committed or len(completion.messages) != 1:
        return Continued(completion, None)
    only = completion.messages[0]
    if only.queue != inline.queue or not inline.can_run(only.task):
        return Continued(completion, None)
    claimed = claim_step(session, only.step_id, only.attempt, inline.owner, inline.lease_s, now)
    if isinstance(claimed, Throttled):  # its key is at its limit: it waits, no message
        return Continued(Completion(claimed.messages, completion.run_status), None)
    return Continued(Completion([], completion.run_status), claimed)


def verify_continued(session: Session, fence: Fence, inline: Inline | None) -> Continued | None:
    """What :func:`complete_and_continue` committed, read back; None if it did not land."""
    completion = verify_completion(session, fence)
    if completion is None:
        return None
    if inline is None:
        return Continued(completion, None)
    row = (
        session.connection()
        .execute(
            # The inline owner is new for this completion: whatever step it holds (a
            # dependent, or a map's next element) is the one this completion claimed.
            select(WorkflowStep.id, WorkflowStep.attempt).where(
                WorkflowStep.run_id == fence.run_id,
                WorkflowStep.status == StepStatus.RUNNING,
                WorkflowStep.lease_owner == inline.owner,
            )
        )
        .first()
    )
    claimed = verify_claim(session, row.id, row.attempt, inline.owner) if row else None
    return Continued(completion, claimed)
