"""The notification outbox: a row written in the transaction of what it tells.

Beat sends what is unsent to the hook (``CAIRN_NOTIFY_HOOK``, see worker/notify.py), so a
notice is never sent for a change that rolled back, nor lost by a crash after the commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from db.models import Notification

#: The events a hook is told of.
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_DECIDED = "approval.decided"
APPROVAL_EXPIRED = "approval.expired"
BUDGET_REACHED = "budget.reached"
EVENTS = (APPROVAL_REQUESTED, APPROVAL_DECIDED, APPROVAL_EXPIRED, BUDGET_REACHED)


def add_notice(
    session: Session, run_id: uuid.UUID, event: str, data: dict[str, Any], now: datetime
) -> None:
    """Queue ``event`` about run ``run_id`` for the hook; sent after this transaction commits."""
    assert event in EVENTS, event
    session.connection().execute(
        insert(Notification).values(
            run_id=run_id, event=event, data={"run_id": str(run_id), **data}, created_at=now
        )
    )
