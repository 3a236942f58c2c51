"""What waiting steps wait for: their waits, the signals sent to runs, and the outbox of
notifications about approvals and budgets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin
from db.states import WaitKind, WaitStatus, check_in
from db.types import JSONValue


class StepWait(IdMixin, CreatedMixin, Base):
    """One wait of a step: what for, until when, and (once resolved) its result.

    ``seq`` numbers a step's own waits in the order its code makes them, across attempts:
    a step re-run after a wait makes the same calls again, and call ``seq`` returns the
    recorded result at once. A paused run's budget wait has no ``seq`` (it is not a call).
    """

    __tablename__ = "step_waits"
    __table_args__ = (
        UniqueConstraint("step_id", "seq"),
        CheckConstraint(check_in("kind", WaitKind), name="kind_valid"),
        CheckConstraint(check_in("status", WaitStatus), name="status_valid"),
        # The timer: waiting waits by the time they end.
        Index(None, "status", "wake_at"),
        Index(None, "run_id", "status", "kind", "name"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int | None]
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=WaitStatus.WAITING)
    #: The signal's name.
    name: Mapped[str | None] = mapped_column(String(200))
    approval_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("approval_requests.id", ondelete="CASCADE"), index=True
    )
    #: A child wait: the child run whose end it waits for.
    child_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    #: When a sleep ends, or a signal's or approval's timeout passes.
    wake_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None]
    resolved_at: Mapped[datetime | None]


class Signal(IdMixin, CreatedMixin, Base):
    """A named JSON payload sent to a run; delivered to exactly one wait for that name."""

    __tablename__ = "signals"
    __table_args__ = (Index(None, "run_id", "name", "delivered_at"),)

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    payload: Mapped[Any] = mapped_column(JSONValue, nullable=True)
    #: The wait it was delivered to; None while it is kept for a step yet to wait.
    wait_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("step_waits.id", ondelete="CASCADE"), unique=True
    )
    delivered_at: Mapped[datetime | None]


class Notification(IdMixin, CreatedMixin, Base):
    """An outbox row: written in the transaction of what it tells, sent by beat after."""

    __tablename__ = "notifications"
    __table_args__ = (Index(None, "sent_at", "created_at"),)

    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(50))
    data: Mapped[dict[str, Any]]
    sent_at: Mapped[datetime | None]
