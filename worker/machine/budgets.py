"""Budgets: a run's ``budget_usd`` and its tenant's daily and monthly spend limits, checked
in the transaction that records the costs (a checkpoint, a completion, a failure).

Money already spent is a fact: the costs are always recorded. When they cross a budget, the
run pauses and an approval request "raise the budget?" is raised; approving it with a new
budget resumes the run, rejecting it cancels the run (see worker/machine/approvals.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import ApprovalRequest, CostRecord, Tenant, WorkflowRun
from db.repositories.base import ensure_tenant
from db.states import ApprovalKind, ApprovalStatus, RunStatus, TimeoutPolicy
from db.views import money
from worker import limits
from worker.machine.events import add_event
from worker.machine.notices import BUDGET_REACHED, add_notice
from worker.machine.requests import raise_request
from worker.machine.transitions import PAUSE_RUN

#: Why a run paused: the budget it crossed.
RUN_BUDGET = "run_budget"
TENANT_DAILY = "tenant_daily"
TENANT_MONTHLY = "tenant_monthly"
#: What a budget request asks.
TITLE = "Raise the budget?"


@dataclass(frozen=True)
class Crossing:
    """A budget and what was spent under it (crossed when the spend is over the limit)."""

    reason: str
    limit_usd: Decimal
    spent_usd: Decimal

    def describe(self) -> str:
        """One line for people: what was crossed, by how much."""
        what = {
            RUN_BUDGET: "the run's budget",
            TENANT_DAILY: "the tenant's daily spend limit",
            TENANT_MONTHLY: "the tenant's monthly spend limit",
        }[self.reason]
        return f"spent ${money(self.spent_usd)} of {what} of ${money(self.limit_usd)}"


def add_spend(session: Session, run_id: uuid.UUID, usd: Decimal, now: datetime) -> Crossing | None:
    """Add money an attempt spent to its run's total, then check the budgets: the budget
    crossed, if any (the run is then paused)."""
    if not usd:
        return None
    session.connection().execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run_id)
        .values(cost_usd=WorkflowRun.cost_usd + usd)
    )
    return check_budgets(session, run_id, now)


def check_budgets(
    session: Session, run_id: uuid.UUID, now: datetime, *, may_pause: bool = True
) -> Crossing | None:
    """The first budget the run's recorded spend is over, pausing the run if it runs (unless
    ``may_pause`` is False: the completion of a run's last step finishes it, nothing is left
    to stop, and the crossing is only logged)."""
    status, budgets = _budgets(session, run_id, now)
    crossing = next((b for b in budgets if b.spent_usd > b.limit_usd), None)
    if crossing is None:
        return None
    if may_pause:
        pause_run(session, run_id, status, crossing, now)
    else:
        add_event(session, run_id, "budget_exceeded", now, data=_data(crossing))
    return crossing


def _budgets(session: Session, run_id: uuid.UUID, now: datetime) -> tuple[str, list[Crossing]]:
    """The run's status, and every budget that applies to it with what was spent under it
    (the run's own first, then its tenant's day and month)."""
    row = (
        session.connection()
        .execute(
            select(
                WorkflowRun.cost_usd,
                WorkflowRun.budget_usd,
                WorkflowRun.status,
                WorkflowRun.tenant_id,
                Tenant.daily_limit_usd,
                Tenant.monthly_limit_usd,
            )
            .join(Tenant, Tenant.id == WorkflowRun.tenant_id)
            .where(WorkflowRun.id == run_id)
        )
        .one()
    )
    found: list[Crossing] = []
    if row.budget_usd is not None:
        found.append(Crossing(RUN_BUDGET, row.budget_usd, row.cost_usd))
    if row.daily_limit_usd is not None or row.monthly_limit_usd is not None:
        # The tenant's costs are summed under its row's lock: transactions that record
        # its costs go one by one from here, so each sees every cost committed before it
        # and a limit is crossed exactly once, not by several runs at once unseen.
        session.connection().execute(
            select(Tenant.id).where(Tenant.id == row.tenant_id).with_for_update()
        )
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    tenant_limits = (
        (TENANT_DAILY, row.daily_limit_usd, day),
        (TENANT_MONTHLY, row.monthly_limit_usd, day.replace(day=1)),
    )
    for reason, limit, since in tenant_limits:
        if limit is not None:
            found.append(Crossing(reason, limit, tenant_spend(session, row.tenant_id, since)))
    return str(row.status), found


def tenant_spend(session: Session, tenant_id: uuid.UUID, since: datetime) -> Decimal:
    """Money recorded by every run of the tenant since ``since``."""
    total = session.connection().scalar(
        select(func.coalesce(func.sum(CostRecord.usd), 0))
        .join(WorkflowRun, WorkflowRun.id == CostRecord.run_id)
        .where(WorkflowRun.tenant_id == tenant_id, CostRecord.created_at >= since)
    )
    return Decimal(total or 0)


def pause_run(
    session: Session, run_id: uuid.UUID, status: str, crossing: Crossing, now: datetime
) -> None:
    """Pause a running run and ask "raise the budget?" (once: a paused run keeps its one
    pending request, however many of its steps cross the budget after)."""
    if status != RunStatus.RUNNING:
        return
    paused = (
        session.connection()
        .execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == run_id, PAUSE_RUN.guard())
            .values(status=PAUSE_RUN.target, updated_at=now)
            .returning(WorkflowRun.tenant_id)
        )
        .first()
    )
    if paused is None:
        return
    approval_id = raise_request(
        session,
        tenant_id=paused.tenant_id,
        run_id=run_id,
        step_id=None,
        kind=ApprovalKind.BUDGET,
        requested_by="budget",
        ask={"title": TITLE, "details": _data(crossing), "on_timeout": TimeoutPolicy.FAIL},
        now=now,
    )
    data = _data(crossing) | {"approval_id": str(approval_id)}
    add_event(session, run_id, "pause_run", now, data=data)
    add_notice(session, run_id, BUDGET_REACHED, data, now)


def pending_budget_approval(session: Session, run_id: uuid.UUID) -> uuid.UUID | None:
    """The pending "raise the budget?" request of a paused run."""
    return session.connection().scalar(
        select(ApprovalRequest.id).where(
            ApprovalRequest.run_id == run_id,
            ApprovalRequest.kind == ApprovalKind.BUDGET,
            ApprovalRequest.status == ApprovalStatus.PENDING,
        )
    )


@dataclass(frozen=True)
class SpendLimits:
    """A tenant's spend limits and what it spent against them."""

    tenant: str
    daily_limit_usd: Decimal | None
    monthly_limit_usd: Decimal | None
    spent_today_usd: Decimal
    spent_this_month_usd: Decimal


def spend_limits(session: Session, tenant_id: uuid.UUID, now: datetime) -> SpendLimits:
    """The tenant's limits and spend, the day and month taken in UTC."""
    name, daily, monthly = (
        session.connection()
        .execute(
            select(Tenant.name, Tenant.daily_limit_usd, Tenant.monthly_limit_usd).where(
                Tenant.id == tenant_id
            )
        )
        .one()
    )
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return SpendLimits(
        name,
        None if daily is None else money(daily),
        None if monthly is None else money(monthly),
        money(tenant_spend(session, tenant_id, day)),
        money(tenant_spend(session, tenant_id, day.replace(day=1))),
    )


def set_spend_limits(
    session: Session,
    tenant: str,
    daily: Decimal | str | float | None,
    monthly: Decimal | str | float | None,
    now: datetime,
) -> SpendLimits:
    """Set a tenant's limits (creating the tenant if it has no run yet); None removes one.
    Each amount is checked here, naming ``daily_usd`` or ``monthly_usd``."""
    limits.check_text("tenant", tenant, limits.TENANT_MAX)
    checked = [
        None if value is None else limits.check_money(field, value)
        for field, value in (("daily_usd", daily), ("monthly_usd", monthly))
    ]
    tenant_id = ensure_tenant(session, tenant).id
    session.connection().execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(daily_limit_usd=checked[0], monthly_limit_usd=checked[1])
    )
    return spend_limits(session, tenant_id, now)


def budget_left(session: Session, run_id: uuid.UUID, now: datetime) -> Decimal | None:
    """The least money left under any budget of the run (None: no budget applies)."""
    _, budgets = _budgets(session, run_id, now)
    return min((b.limit_usd - b.spent_usd for b in budgets), default=None)


def _data(crossing: Crossing) -> dict[str, str]:
    return {
        "reason": crossing.reason,
        "limit_usd": str(money(crossing.limit_usd)),
        "spent_usd": str(money(crossing.spent_usd)),
        "message": crossing.describe(),
    }
