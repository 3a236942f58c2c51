"""Per-key concurrency: at most ``limit`` attempts with one key run at once, everywhere.

A step with a concurrency key (``concurrency: {key: "{customer}", limit: 2}``, rendered
over the run's inputs when the step is created) is never claimed by the one-statement
claim. Its claim takes the key's lock (a PostgreSQL advisory transaction lock; SQLite
serialises writers anyway), counts the key's running attempts, and either claims the step
or moves it to ``throttled``: no message is out for it, no worker holds it, no attempt
is spent. A throttled step is queued again, oldest first, when a slot frees: by the
completion of an attempt with that key (in its transaction), and by beat's timer for
every other way an attempt stops running (a failure, a wait, a reaped lease), so a
crashed holder's slot comes back when its lease is reaped.
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from db.models import WorkflowStep
from db.states import StepStatus
from worker.definitions.spec import ConcurrencySpec
from worker.errors import DefinitionError
from worker.machine.events import add_event
from worker.machine.messages import MESSAGE_COLUMNS, StepMessage, to_messages
from worker.machine.transitions import THROTTLE, UNTHROTTLE

#: Longest key stored (the tenant's id, a colon, the rendered template).
KEY_MAX = 300


def names_in(template: str) -> list[str]:
    """The input names a key template uses."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def render_key(
    tenant_id: uuid.UUID, spec: ConcurrencySpec, values: Mapping[str, Any], field: str
) -> str:
    """The stored key: the template filled from ``values``, under the tenant's id (keys
    of two tenants never share slots). :class:`DefinitionError` naming ``field`` when
    the template names a missing input or the key is too long."""
    filled: dict[str, str] = {}
    for name in names_in(spec.key):
        if name not in values:
            raise DefinitionError(
                f"{field}.key", f"names input {name!r}, which the run does not have"
            )
        value = values[name]
        filled[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    key = f"{tenant_id.hex}:{spec.key.format_map(filled)}"
    if len(key) > KEY_MAX:
        raise DefinitionError(f"{field}.key", f"renders longer than {KEY_MAX - 33} characters")
    return key


def lock_key(session: Session, key: str) -> None:
    """Hold the key's lock until commit: its claims and wake-ups go one at a time."""
    if session.connection().dialect.name == "postgresql":
        session.connection().execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
        )


def running(session: Session, key: str) -> int:
    """Attempts with the key that hold a lease now."""
    return int(
        session.connection().scalar(
            select(func.count()).where(
                WorkflowStep.concurrency_key == key, WorkflowStep.status == StepStatus.RUNNING
            )
        )
        or 0
    )


def may_claim(
    session: Session,
    step_id: uuid.UUID,
    key: str,
    limit: int,
    queued_at: datetime | None,
    now: datetime,
) -> tuple[bool, list[StepMessage]]:
    """Under the key's lock: whether the step may run now (a slot is free and no step of
    the key was throttled before it was queued). If not, it is throttled, and the older
    throttled steps that fit in free slots are queued (their messages are returned)."""
    lock_key(session, key)
    older = select(WorkflowStep.id).where(
        WorkflowStep.concurrency_key == key, WorkflowStep.status == StepStatus.THROTTLED
    )
    if queued_at is not None:
        older = older.where(WorkflowStep.queued_at <= queued_at)
    if running(session, key) < limit and session.connection().scalar(older.limit(1)) is None:
        return True, []
    row = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == step_id, THROTTLE.guard())
            .values(status=THROTTLE.target, dispatched_at=None)
            .returning(WorkflowStep.run_id, WorkflowStep.attempt)
        )
        .first()
    )
    if row is not None:
        add_event(session, row.run_id, "throttle", now, step_id=step_id, attempt=row.attempt)
    return False, wake_throttled(session, key, now)


def wake_throttled(session: Session, key: str, now: datetime) -> list[StepMessage]:
    """Queue the key's oldest throttled steps into its free slots; the messages to send."""
    lock_key(session, key)
    holding = (
        session.connection()
        .execute(
            select(func.count(), func.min(WorkflowStep.concurrency_limit)).where(
                WorkflowStep.concurrency_key == key,
                WorkflowStep.status.in_((StepStatus.RUNNING, StepStatus.QUEUED)),
            )
        )
        .one()
    )
    limit = holding[1] or session.connection().scalar(
        select(func.min(WorkflowStep.concurrency_limit)).where(
            WorkflowStep.concurrency_key == key, WorkflowStep.status == StepStatus.THROTTLED
        )
    )
    free = int(limit or 0) - int(holding[0])
    if free <= 0:
        return []
    oldest = (
        select(WorkflowStep.id)
        .where(WorkflowStep.concurrency_key == key, UNTHROTTLE.guard())
        .order_by(WorkflowStep.queued_at, WorkflowStep.id)
        .limit(free)
    )
    rows = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(WorkflowStep.id.in_(oldest.scalar_subquery()), UNTHROTTLE.guard())
            .values(status=UNTHROTTLE.target, dispatched_at=now)
            .returning(*MESSAGE_COLUMNS)
        )
        .all()
    )
    for row in rows:
        add_event(session, row[2], "unthrottle", now, step_id=row[0], attempt=row[1])
    return to_messages(rows)


def wake_all(session: Session, now: datetime, limit: int = 100) -> list[StepMessage]:
    """Beat's safety net: every key with throttled steps gets its free slots filled."""
    keys = session.connection().scalars(
        select(WorkflowStep.concurrency_key)
        .where(WorkflowStep.status == StepStatus.THROTTLED)
        .distinct()
        .limit(limit)
    )
    messages: list[StepMessage] = []
    for key in list(keys):
        if key is not None:
            messages += wake_throttled(session, key, now)
    return messages
