"""Small reads for assertions: row counts and run events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, func, select

from db.base import Base
from db.models import RunEvent
from db.session import transaction


def count(engine: Engine, model: type[Any], **where: Any) -> int:
    """Rows of ``model`` matching ``where`` (column=value)."""
    query = select(func.count()).select_from(model)
    for column, value in where.items():
        query = query.where(getattr(model, column) == value)
    with transaction(engine) as session:
        return int(session.scalar(query) or 0)


def all_counts(engine: Engine) -> dict[str, int]:
    """Rows in every cairn table."""
    with transaction(engine) as session:
        return {
            table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


def event_kinds(engine: Engine, run_id: uuid.UUID) -> list[str]:
    """The kinds of a run's events, in order."""
    with transaction(engine) as session:
        return list(
            session.scalars(
                select(RunEvent.kind).where(RunEvent.run_id == run_id).order_by(RunEvent.id)
            )
        )
