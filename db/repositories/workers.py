"""The worker registry (not tenant-scoped: workers serve every tenant)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Worker
from db.views import WorkerView, worker_view


@dataclass(frozen=True, slots=True)
class WorkerRepository:
    """Read the worker registry."""

    session: Session

    def views(self) -> list[WorkerView]:
        """Every worker process in the registry, newest first."""
        rows = self.session.scalars(select(Worker).order_by(Worker.created_at.desc())).all()
        return [worker_view(w) for w in rows]
