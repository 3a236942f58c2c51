"""The run's event log: append-only, one row per verb that acted (for audit and the UI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from db.models import RunEvent
from worker.ids import new_id

#: Built once, on the table (not the ORM entity): an event is written by most verbs.
_INSERT = insert(cast(Table, RunEvent.__table__))


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
        _INSERT,
        {
            "id": new_id(),
            "run_id": run_id,
            "kind": kind,
            "step_id": step_id,
            "attempt": attempt,
            "data": data,
            "created_at": now,
        },
    )
