"""Workflow runs and what hangs off a run as a whole: branches, metrics, the event log."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin
from db.states import RunStatus, check_in
from db.types import NullableJSON

#: Money columns: 18 digits, 8 after the point (fractions of a cent per token add up).
Money = Numeric(18, 8)


class WorkflowRun(IdMixin, CreatedMixin, Base):
    """One execution of a pinned workflow definition."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        CheckConstraint(check_in("status", RunStatus), name="status_valid"),
        CheckConstraint("steps_left >= 0", name="steps_left_non_negative"),
        Index(None, "tenant_id", "status", "created_at"),
        Index(None, "status", "updated_at"),
    )

    #: Indexed by the (tenant_id, ...) keys above.
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    definition_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_definitions.id", ondelete="CASCADE"), index=True
    )
    #: The run this one was forked from, or the run whose step started it (a child run).
    #: SET NULL, not CASCADE: a fork keeps its own rows and outlives its parent's purge.
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="SET NULL"), index=True
    )
    #: A child run: the parent's step that started it (``ctx.start_child``).
    parent_step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="SET NULL", use_alter=True), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED)
    inputs: Mapped[dict[str, Any]]
    outputs: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    budget_usd: Mapped[Decimal | None] = mapped_column(Money)
    #: Steps not yet succeeded. Completion decrements it in the statement that locks the
    #: run row, so exactly one completion sees it reach 0 and finishes the run.
    steps_left: Mapped[int] = mapped_column(default=0)
    #: Rolled up from cost_records in the same transaction that records them.
    cost_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: When the run's status last changed. Its counters (steps left, cost) move without
    #: it: an indexed column changed by every step's completion would make each of those
    #: updates write every index of the table (no HOT update).
    updated_at: Mapped[datetime | None]
    #: The W3C trace context its start was made in (OpenTelemetry): its steps' spans
    #: join that trace.
    trace_context: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)


class Branch(IdMixin, CreatedMixin, Base):
    """A run started from another run's state at one of its steps."""

    __tablename__ = "branches"

    parent_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    child_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True, unique=True
    )
    from_step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str | None] = mapped_column(String(200))


class WorkflowMetric(IdMixin, CreatedMixin, Base):
    """A number measured for a run or one step attempt (duration, queue wait, ...)."""

    __tablename__ = "workflow_metrics"
    __table_args__ = (UniqueConstraint("step_id", "attempt", "name"),)

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int | None]
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float]


class RunEvent(IdMixin, CreatedMixin, Base):
    """Append-only log of a run: one row per transition, named by the verb that made it."""

    __tablename__ = "run_events"
    __table_args__ = (Index(None, "run_id", "created_at"),)

    #: Indexed by (run_id, created_at): a second index would be one more write per event.
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int | None]
    kind: Mapped[str] = mapped_column(String(50))
    data: Mapped[dict[str, Any] | None]
