"""Cron schedules that start workflow runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin
from db.states import MissedPolicy, ScheduleStatus, check_in


class Schedule(IdMixin, CreatedMixin, Base):
    """Start ``workflow`` with ``inputs`` on every slot of ``cron`` in ``timezone``."""

    __tablename__ = "schedules"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        CheckConstraint(check_in("status", ScheduleStatus), name="status_valid"),
        CheckConstraint(check_in("missed_policy", MissedPolicy), name="missed_policy_valid"),
        CheckConstraint("catch_up_max >= 0", name="catch_up_max_non_negative"),
        Index(None, "status", "next_fire_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    workflow: Mapped[str] = mapped_column(String(200))
    #: None: the newest version at each fire.
    workflow_version: Mapped[int | None]
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    inputs: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=ScheduleStatus.ACTIVE)
    missed_policy: Mapped[str] = mapped_column(String(16), default=MissedPolicy.SKIP)
    catch_up_max: Mapped[int] = mapped_column(default=0)
    next_fire_at: Mapped[datetime | None]
    last_fire_at: Mapped[datetime | None]
