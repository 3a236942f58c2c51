"""Approval requests raised by a step: ``ctx.wait_for_approval`` or an ``approve`` gate.

(Budget requests are raised by worker/machine/budgets.py; deciding is in approvals.py.)
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import ApprovalRequest, WorkflowRun
from db.states import ApprovalKind, ApprovalStatus
from worker.ids import new_id
from worker.machine.events import add_event
from worker.machine.lease import Fence
from worker.machine.notices import APPROVAL_REQUESTED, add_notice


def raise_approval(
    session: Session, fence: Fence, key: str, ask: dict[str, Any], now: datetime
) -> uuid.UUID:
    """Insert a step's approval request (``ask``: title, details, timeout_s, on_timeout,
    group_name, escalate_to) and queue its notice; its id."""
    tenant_id = session.connection().scalar(
        select(WorkflowRun.tenant_id).where(WorkflowRun.id == fence.run_id)
    )
    approval_id = new_id()
    timeout_s = ask.get("timeout_s")
    session.connection().execute(
        insert(ApprovalRequest).values(
            id=approval_id,
            tenant_id=tenant_id,
            run_id=fence.run_id,
            step_id=fence.step_id,
            kind=ApprovalKind.STEP,
            status=ApprovalStatus.PENDING,
            requested_by=f"step:{key}",
            expires_at=now + timedelta(seconds=timeout_s) if timeout_s else None,
            created_at=now,
            **ask,
        )
    )
    notice_requested(session, fence.run_id, approval_id, ask, now)
    return approval_id


def notice_requested(
    session: Session,
    run_id: uuid.UUID,
    approval_id: uuid.UUID,
    ask: dict[str, Any],
    now: datetime,
) -> None:
    """Log the request in the run's events and queue its notice for the hook."""
    add_event(session, run_id, "request_approval", now, data={"approval_id": str(approval_id)})
    add_notice(
        session,
        run_id,
        APPROVAL_REQUESTED,
        {
            "approval_id": str(approval_id),
            "kind": ApprovalKind.STEP,
            "title": ask.get("title"),
            "group": ask.get("group_name"),
        },
        now,
    )
