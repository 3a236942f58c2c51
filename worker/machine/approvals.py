"""Approval requests: raised by a step's wait or a crossed budget, decided by a person (or
by the request's on_timeout policy when nobody decides in time).

Deciding is ONE guarded UPDATE from ``pending``: of two people deciding at once exactly one
wins, and the other gets :class:`AlreadyDecided` naming who did. The decision resolves
the waits on the request, which queues their steps again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import ApprovalRequest, StepWait, Tenant, WorkflowRun
from db.states import (
    ApprovalKind,
    ApprovalStatus,
    RunStatus,
    TimeoutPolicy,
    WaitKind,
    WaitStatus,
)
from worker import limits
from worker.errors import AlreadyDecided, DefinitionError, NotFound, RunEnded
from worker.machine.budgets import (
    RUN_BUDGET,
    TENANT_DAILY,
    TENANT_MONTHLY,
    check_budgets,
)
from worker.machine.ending import end_run
from worker.machine.events import add_event
from worker.machine.messages import StepMessage
from worker.machine.notices import (
    APPROVAL_DECIDED,
    APPROVAL_EXPIRED,
    add_notice,
)
from worker.machine.requests import raise_request
from worker.machine.transitions import RESUME_RUN
from worker.machine.waits import (
    due_waits,
    resolve_wait,
    resume_budget_waits,
    waits_on,
)


@dataclass(frozen=True)
class DecisionInput:
    """A decision's caller input, checked: who, why, and a budget request's new amount."""

    by: str
    comment: str | None
    budget_usd: Decimal | None

    @classmethod
    def check(
        cls, by: Any, comment: Any, budget_usd: Decimal | str | float | None
    ) -> DecisionInput:
        """Refuse what cannot be stored, naming the field."""
        limits.check_text("by", by, limits.DECIDED_BY_MAX)
        if comment is not None:
            limits.check_text("comment", comment, limits.COMMENT_MAX, allow_empty=True)
        amount = None if budget_usd is None else limits.check_money("budget_usd", budget_usd)
        return cls(by, comment or None, amount)


@dataclass(frozen=True)
class Decided:
    """What a decision set in motion: the steps to send."""

    status: str
    messages: list[StepMessage]


def decide(
    session: Session,
    tenant_id: uuid.UUID,
    approval_id: uuid.UUID,
    approve: bool,
    by: str,
    comment: str | None,
    now: datetime,
    *,
    budget_usd: Decimal | None = None,
) -> Decided:
    """Approve or reject a pending request; :class:`AlreadyDecided` if it is not pending.

    A budget request is approved with ``budget_usd``: the run's new budget, or the tenant's
    new daily or monthly limit (whichever the run crossed); the run resumes from where it
    stood. Rejecting it cancels the run.
    """
    request = _get(session, tenant_id, approval_id)
    if request.kind == ApprovalKind.BUDGET and approve:
        _check_new_budget(session, request, budget_usd)
    elif budget_usd is not None:
        raise DefinitionError("budget_usd", "is only for approving a budget request")
    status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    if not _settle(session, approval_id, status, by, comment, now, budget_usd):
        raise _already(session, approval_id)
    if request.kind == ApprovalKind.BUDGET:
        return Decided(status, _decide_budget(session, request, approve, by, budget_usd, now))
    result = {"status": status, "by": by, "comment": comment, "decided_at": now.isoformat()}
    return Decided(status, _resolve_all(session, approval_id, result, now))


def expire_due(session: Session, now: datetime) -> list[StepMessage]:
    """Waits whose time came: sleeps end, signal waits time out, and approval requests
    nobody decided follow their on_timeout policy."""
    messages: list[StepMessage] = []
    for wait_id, kind, approval_id in due_waits(session, now):
        if kind == WaitKind.SLEEP:
            messages += resolve_wait(session, wait_id, {"slept": True}, now)
        elif kind == WaitKind.SIGNAL:
            messages += resolve_wait(session, wait_id, {"timed_out": True}, now)
        elif kind == WaitKind.APPROVAL and approval_id is not None:
            messages += _expire(session, approval_id, now)
    return messages


def _expire(session: Session, approval_id: uuid.UUID, now: datetime) -> list[StepMessage]:
    expired = (
        session.connection()
        .execute(
            update(ApprovalRequest)
            .where(
                ApprovalRequest.id == approval_id,
                ApprovalRequest.status == ApprovalStatus.PENDING,
            )
            .values(status=ApprovalStatus.EXPIRED, decided_at=now, decided_by="cairn (timeout)")
            .returning(
                ApprovalRequest.run_id,
                ApprovalRequest.step_id,
                ApprovalRequest.on_timeout,
                ApprovalRequest.title,
                ApprovalRequest.details,
                ApprovalRequest.escalate_to,
                ApprovalRequest.timeout_s,
                ApprovalRequest.tenant_id,
                ApprovalRequest.requested_by,
            )
        )
        .first()
    )
    if expired is None:
        return []
    policy = expired.on_timeout
    data = {"approval_id": str(approval_id), "on_timeout": policy}
    add_event(session, expired.run_id, "expire_approval", now, step_id=expired.step_id, data=data)
    add_notice(session, expired.run_id, APPROVAL_EXPIRED, data, now)
    if policy == TimeoutPolicy.ESCALATE:
        return _escalate(session, approval_id, expired, now)
    approved = policy == TimeoutPolicy.APPROVE
    result = {
        "status": ApprovalStatus.APPROVED if approved else ApprovalStatus.EXPIRED,
        "by": "cairn (on_timeout=approve)" if approved else None,
        "comment": None,
        "decided_at": now.isoformat(),
    }
    return _resolve_all(session, approval_id, result, now)


def _escalate(session: Session, old_id: uuid.UUID, old: Any, now: datetime) -> list[StepMessage]:
    """Raise the request again to the ``escalate_to`` group; the step's wait moves to it.
    The new request fails the step if it too expires (escalating once, not forever)."""
    ask = {
        "title": old.title,
        "details": old.details,
        "group_name": old.escalate_to,
        "on_timeout": TimeoutPolicy.FAIL,
        "escalate_to": None,
        "timeout_s": old.timeout_s,
    }
    new = raise_request(
        session,
        tenant_id=old.tenant_id,
        run_id=old.run_id,
        step_id=old.step_id,
        kind=ApprovalKind.STEP,
        requested_by=old.requested_by,
        ask=ask,
        now=now,
        escalated_from_id=old_id,
    )
    expires = now + timedelta(seconds=old.timeout_s) if old.timeout_s else None
    session.connection().execute(
        update(StepWait)
        .where(StepWait.approval_id == old_id, StepWait.status == WaitStatus.WAITING)
        .values(approval_id=new, wake_at=expires)
    )
    add_event(
        session,
        old.run_id,
        "escalate_approval",
        now,
        step_id=old.step_id,
        data={"from": str(old_id), "approval_id": str(new), "group": old.escalate_to},
    )
    return []


def _decide_budget(
    session: Session,
    request: Any,
    approve: bool,
    by: str,
    budget_usd: Decimal | None,
    now: datetime,
) -> list[StepMessage]:
    run_id = request.run_id
    if not approve:
        end_run(
            session,
            run_id,
            RunStatus.CANCELLED,
            now,
            kind="cancel_run",
            error={"reason": "budget_rejected", "by": by, "message": "the new budget was rejected"},
        )
        return []
    reason = (request.details or {}).get("reason", RUN_BUDGET)
    if reason == RUN_BUDGET:
        session.connection().execute(
            update(WorkflowRun).where(WorkflowRun.id == run_id).values(budget_usd=budget_usd)
        )
    else:
        column = "daily_limit_usd" if reason == TENANT_DAILY else "monthly_limit_usd"
        session.connection().execute(
            update(Tenant).where(Tenant.id == request.tenant_id).values({column: budget_usd})
        )
    messages = _resume(session, run_id, now)
    if reason in (TENANT_DAILY, TENANT_MONTHLY):
        # The tenant's limit was raised: every run paused by that limit goes on too.
        others = session.connection().execute(
            select(ApprovalRequest.id, ApprovalRequest.run_id).where(
                ApprovalRequest.id != request.id,
                ApprovalRequest.tenant_id == request.tenant_id,
                ApprovalRequest.kind == ApprovalKind.BUDGET,
                ApprovalRequest.status == ApprovalStatus.PENDING,
                ApprovalRequest.details["reason"].as_string() == reason,
            )
        )
        for other_id, other_run in list(others):
            note = f"limit raised by approval {request.id}"
            if _settle(session, other_id, ApprovalStatus.APPROVED, by, note, now, budget_usd):
                messages += _resume(session, other_run, now)
    return messages


def _settle(
    session: Session,
    approval_id: uuid.UUID,
    status: ApprovalStatus,
    by: str,
    comment: str | None,
    now: datetime,
    budget_usd: Decimal | None,
) -> bool:
    """Decide a pending request: one guarded UPDATE (of two deciders, one wins), its event
    and its notice. False when it was not pending any more."""
    won = (
        session.connection()
        .execute(
            update(ApprovalRequest)
            .where(
                ApprovalRequest.id == approval_id,
                ApprovalRequest.status == ApprovalStatus.PENDING,
            )
            .values(
                status=status,
                decided_by=by,
                comment=comment,
                decided_at=now,
                new_budget_usd=budget_usd,
            )
            .returning(ApprovalRequest.run_id, ApprovalRequest.step_id, ApprovalRequest.kind)
        )
        .first()
    )
    if won is None:
        return False
    data = {"approval_id": str(approval_id), "status": status, "by": by, "comment": comment}
    add_event(session, won.run_id, "decide_approval", now, step_id=won.step_id, data=data)
    add_notice(session, won.run_id, APPROVAL_DECIDED, data | {"kind": won.kind}, now)
    return True


def _resume(session: Session, run_id: uuid.UUID, now: datetime) -> list[StepMessage]:
    resumed = (
        session.connection()
        .execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == run_id, RESUME_RUN.guard())
            .values(status=RESUME_RUN.target, updated_at=now)
            .returning(WorkflowRun.id)
        )
        .first()
    )
    if resumed is None:
        return []
    add_event(session, run_id, "resume_run", now)
    # Still over another budget (a tenant limit, say): pause again at once, asking anew.
    if check_budgets(session, run_id, now) is not None:
        return []
    return resume_budget_waits(session, run_id, now)


def _check_new_budget(session: Session, request: Any, budget_usd: Decimal | None) -> None:
    details = request.details or {}
    spent = Decimal(str(details.get("spent_usd", "0")))
    if budget_usd is None:
        raise DefinitionError(
            "budget_usd",
            f"approving a budget request needs the new budget (spent so far: ${spent}); "
            "pass --budget AMOUNT",
        )
    if budget_usd <= spent:
        raise DefinitionError(
            "budget_usd",
            f"${budget_usd} is not above the ${spent} already spent: the run would pause again",
        )


def _resolve_all(
    session: Session, approval_id: uuid.UUID, result: dict[str, Any], now: datetime
) -> list[StepMessage]:
    messages: list[StepMessage] = []
    for wait_id in waits_on(session, approval_id):
        messages += resolve_wait(session, wait_id, result | {"approval_id": str(approval_id)}, now)
    return messages


def _get(session: Session, tenant_id: uuid.UUID, approval_id: uuid.UUID) -> Any:
    row = (
        session.connection()
        .execute(
            select(
                ApprovalRequest.id,
                ApprovalRequest.run_id,
                ApprovalRequest.step_id,
                ApprovalRequest.kind,
                ApprovalRequest.status,
                ApprovalRequest.details,
                ApprovalRequest.tenant_id,
                WorkflowRun.status.label("run_status"),
            )
            .join(WorkflowRun, WorkflowRun.id == ApprovalRequest.run_id)
            .where(ApprovalRequest.id == approval_id, ApprovalRequest.tenant_id == tenant_id)
        )
        .first()
    )
    if row is None:
        raise NotFound(f"approval request {approval_id} not found")
    if row.status != ApprovalStatus.PENDING:
        raise _already(session, approval_id)
    if row.run_status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        raise RunEnded(f"run {row.run_id} has ended ({row.run_status}); nothing waits for this")
    return row


def _already(session: Session, approval_id: uuid.UUID) -> AlreadyDecided:
    status, by, at = (
        session.connection()
        .execute(
            select(
                ApprovalRequest.status, ApprovalRequest.decided_by, ApprovalRequest.decided_at
            ).where(ApprovalRequest.id == approval_id)
        )
        .one()
    )
    who = f" by {by}" if by else ""
    when = f" at {at.isoformat(timespec='seconds')}" if at else ""
    return AlreadyDecided(f"approval request {approval_id} is already {status}{who}{when}")
