"""cancel_run: stop a run. Steps not started are cancelled; running attempts are asked to
stop and see it at their next heartbeat or checkpoint."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import WorkflowRun
from db.states import RunStatus
from worker.errors import NotFound
from worker.machine.ending import end_run


def cancel_run(
    session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID, now: datetime, reason: str = ""
) -> bool:
    """Cancel the tenant's run; False when it had already ended. :class:`NotFound` if foreign."""
    cancelled = end_run(
        session,
        run_id,
        RunStatus.CANCELLED,
        now,
        kind="cancel_run",
        error={"type": "RunCancelled", "message": reason or "cancelled"},
        tenant_id=tenant_id,
    )
    if not cancelled:
        owner = session.scalar(select(WorkflowRun.tenant_id).where(WorkflowRun.id == run_id))
        if owner != tenant_id:
            raise NotFound(f"run {run_id} not found")
    return cancelled
