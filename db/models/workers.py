"""The component registry: every worker process, its queues, steps and heartbeat."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin
from db.states import WorkerStatus, check_in


class Worker(IdMixin, CreatedMixin, Base):
    """One worker process (Celery node name + pid)."""

    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint(check_in("status", WorkerStatus), name="status_valid"),
        Index(None, "status", "heartbeat_at"),
    )

    name: Mapped[str] = mapped_column(String(255), unique=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=WorkerStatus.INITIALIZED)
    queues: Mapped[list[Any]]
    step_names: Mapped[list[Any]]
    version: Mapped[str] = mapped_column(String(50))
    heartbeat_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
