"""Raising an approval request: the row, its event and its notice, in one place.

A step raises one (``ctx.wait_for_approval`` or an ``approve`` gate), a crossed budget
raises one (worker/machine/budgets.py), and an expired one escalates to a new one
(worker/machine/approvals.py, where deciding is too).
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
    """A step's approval request (``ask``: title, details, timeout_s, on_timeout,
    group_name, escalate_to); its id."""
    tenant_id = (
        session.connection()
        .execute(select(WorkflowRun.tenant_id).where(WorkflowRun.id == fence.run_id))
        .scalar_one()
    )
    return raise_request(
        session,
        tenant_id=tenant_id,
        run_id=fence.run_id,
        step_id=fence.step_id,
        kind=ApprovalKind.STEP,
        requested_by=f"step:{key}",
        ask=ask,
        now=now,
    )


def raise_request(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    step_id: uuid.UUID | None,
    kind: ApprovalKind,
    requested_by: str,
    ask: dict[str, Any],
    now: datetime,
    escalated_from_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Insert a pending request (``ask`` holds its columns: title, details, timeout_s, ...),
    log it in the run's events and queue its notice for the hook; its id."""
    approval_id = new_id()
    timeout_s = ask.get("timeout_s")
    session.connection().execute(
        insert(ApprovalRequest).values(
            id=approval_id,
            tenant_id=tenant_id,
            run_id=run_id,
            step_id=step_id,
            kind=kind,
            status=ApprovalStatus.PENDING,
            requested_by=requested_by,
            escalated_from_id=escalated_from_id,
            expires_at=now + timedelta(seconds=timeout_s) if timeout_s else None,
            created_at=now,
            **ask,
        )
    )
    add_event(session, run_id, "request_approval", now, data={"approval_id": str(approval_id)})
    add_notice(
        session,
        run_id,
        APPROVAL_REQUESTED,
        {
            "approval_id": str(approval_id),
            "kind": kind,
            "title": ask.get("title"),
            "group": ask.get("group_name"),
        },
        now,
    )
    return approval_id
