"""The run's event log: append-only, one row per verb that acted (for audit and the UI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from db.models import RunEvent


def add_event(
    session: Session,
    run_id: uuid.UUID,
    kind: str,
    now: datetime,
    *,
    step_id: uuid.UUID | None = None,
    attempt: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append to the run's event log; ``kind`` is the name of the verb that acted."""
    session.connection().execute(
        insert(RunEvent).values(
            run_id=run_id, kind=kind, step_id=step_id, attempt=attempt, data=data, created_at=now
        )
    )
