"""What a step attempt records as it works: checkpoints, costs and messages.

Each row is keyed by (step, attempt, seq) or (step, seq), so a replayed write is refused
by the database instead of counted twice.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin
from db.models.runs import Money


class Checkpoint(IdMixin, CreatedMixin, Base):
    """A step's resumable state; the newest one (any attempt) is the next attempt's start."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("step_id", "seq"),)

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    seq: Mapped[int]
    state: Mapped[dict[str, Any] | None]
    #: Set instead of ``state`` when the state was over the inline limit.
    blob_key: Mapped[str | None] = mapped_column(String(1024))
    blob_sha256: Mapped[str | None] = mapped_column(String(64))
    blob_size: Mapped[int | None]


class CostRecord(IdMixin, CreatedMixin, Base):
    """Money and tokens spent by a step attempt (one LLM call, one API call, ...)."""

    __tablename__ = "cost_records"
    __table_args__ = (
        UniqueConstraint("step_id", "attempt", "seq"),
        CheckConstraint("usd >= 0", name="usd_non_negative"),
        CheckConstraint("input_tokens >= 0 AND output_tokens >= 0", name="tokens_non_negative"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    seq: Mapped[int]
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    usd: Mapped[Decimal] = mapped_column(Money)
    meta: Mapped[dict[str, Any] | None]


class Message(IdMixin, CreatedMixin, Base):
    """One message of a step's conversation (LLM agents), tool calls included."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("step_id", "attempt", "seq"),
        CheckConstraint("role IN ('system', 'user', 'assistant', 'tool')", name="role_valid"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    seq: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    tool_calls: Mapped[list[Any] | None]
