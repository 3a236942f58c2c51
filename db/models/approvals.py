"""Approval requests: a step that waits for a person's decision."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin
from db.states import ApprovalStatus, check_in


class ApprovalRequest(IdMixin, CreatedMixin, Base):
    """A question put to a person by a step, and the answer."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        CheckConstraint(check_in("status", ApprovalStatus), name="status_valid"),
        Index(None, "status", "expires_at"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=ApprovalStatus.PENDING)
    prompt: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_note: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
