"""Approval requests: a question put to a person, and the answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin
from db.models.runs import Money
from db.states import ApprovalKind, ApprovalStatus, TimeoutPolicy, check_in


class ApprovalRequest(IdMixin, CreatedMixin, Base):
    """Raised by a step (``ctx.wait_for_approval``, an ``approve`` gate) or by a budget.

    Deciding is one guarded UPDATE from ``pending``: of two people deciding at once,
    exactly one wins and the other is told who did.
    """

    __tablename__ = "approval_requests"
    __table_args__ = (
        CheckConstraint(check_in("status", ApprovalStatus), name="status_valid"),
        CheckConstraint(check_in("kind", ApprovalKind), name="kind_valid"),
        CheckConstraint(check_in("on_timeout", TimeoutPolicy), name="on_timeout_valid"),
        Index(None, "tenant_id", "status", "created_at"),
        Index(None, "status", "expires_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    #: The step that asked; None for a run's budget request.
    step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=ApprovalStatus.PENDING)
    title: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None]
    #: Who asked: ``step:<key>`` or ``budget``.
    requested_by: Mapped[str] = mapped_column(String(200))
    #: The group asked to decide (notified; filters ``cairn approvals list --group``).
    group_name: Mapped[str | None] = mapped_column(String(200))
    on_timeout: Mapped[str] = mapped_column(String(16), default=TimeoutPolicy.FAIL)
    escalate_to: Mapped[str | None] = mapped_column(String(200))
    #: The request this one replaced when it expired under ``escalate``.
    escalated_from_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("approval_requests.id", ondelete="CASCADE"), index=True
    )
    timeout_s: Mapped[float | None]
    expires_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]
    #: A budget request approved with a new budget (or tenant limit): the amount.
    new_budget_usd: Mapped[Decimal | None] = mapped_column(Money)
