"""Per-key concurrency and tenant quotas: at most ``limit`` attempts run at once in a
slot, everywhere.

A slot is a set of steps that share a limit: those with one concurrency key
(``concurrency: {key: "{customer}", limit: 2}``, rendered over the run's inputs when the
step is created, under its tenant's id), and those of one tenant with a quota of running
steps (``max_running_steps``). A step in a slot is never claimed by the one-statement
claim. Its claim takes its slots' locks (PostgreSQL advisory transaction locks, in a
fixed order; SQLite serialises writers anyway), counts each slot's running attempts,
and either claims the step or moves it to ``throttled``: no message is out for it, no
worker holds it, no attempt is spent. Throttled steps are queued again, oldest first,
when their slots have room: by the end of an attempt of the key or of the quota's
tenant (a completion, a failure, a release, a cancel or a wait, in its transaction),
and by beat's timer for the other ways an attempt stops running (a wait for a paused
run's budget, a reaped lease), so a crashed holder's slot comes back when its lease is
reaped.
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select, text, update
from sqlalchemy.orm import Session

from db.models import Tenant, WorkflowRun, WorkflowStep
from db.repositories.base import ensure_tenant
from db.states import StepStatus
from worker import limits
from worker.definitions.spec import ConcurrencySpec
from worker.errors import DefinitionError
from worker.machine.events import add_event
from worker.machine.messages import MESSAGE_COLUMNS, StepMessage, to_messages
from worker.machine.transitions import THROTTLE, UNTHROTTLE

#: Longest key stored (the tenant's id, a colon, the rendered template).
KEY_MAX = 300
#: Steps in one of these hold (or are about to take) a slot.
HOLDING = (StepStatus.RUNNING, StepStatus.QUEUED)


@dataclass(frozen=True)
class Slot:
    """Steps sharing a limit: ``lock`` names it, ``scope`` selects its steps."""

    lock: str
    limit: int
    scope: ColumnElement[bool]


def key_slot(key: str, limit: int) -> Slot:
    """The slot of a concurrency key."""
    return Slot(f"key:{key}", limit, WorkflowStep.concurrency_key == key)


def tenant_slot(tenant_id: uuid.UUID, quota: int) -> Slot:
    """The slot of a tenant's quota of running steps."""
    in_tenant = exists().where(
        WorkflowRun.id == WorkflowStep.run_id, WorkflowRun.tenant_id == tenant_id
    )
    return Slot(f"tenant:{tenant_id.hex}", quota, in_tenant)


def tenant_of_key(key: str) -> uuid.UUID:
    """The tenant a stored key belongs to (keys are ``<tenant id hex>:<rendered>``)."""
    return uuid.UUID(hex=key.split(":", 1)[0])


def slots_of(
    session: Session, key: str | None, tenant_id: uuid.UUID, limit: int | None = None
) -> list[Slot]:
    """The slots a step of ``tenant_id`` with concurrency key ``key`` (or none; its
    ``limit`` when known, else the least of the key's live steps) is in."""
    found = []
    if key is not None:
        if limit is None:
            limit = session.connection().scalar(
                select(func.min(WorkflowStep.concurrency_limit)).where(
                    WorkflowStep.concurrency_key == key,
                    WorkflowStep.status.in_((*HOLDING, StepStatus.THROTTLED)),
                )
            )
        found.append(key_slot(key, int(limit or 1)))
    quota = session.connection().scalar(
        select(Tenant.max_running_steps).where(Tenant.id == tenant_id)
    )
    if quota is not None:
        found.append(tenant_slot(tenant_id, int(quota)))
    return found


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


def _lock(session: Session, slots: list[Slot]) -> None:
    """Hold the slots' locks until commit, in one order (no two claims deadlock)."""
    if session.connection().dialect.name != "postgresql":
        return
    for name in sorted({slot.lock for slot in slots}):
        session.connection().execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": name}
        )


def _count(session: Session, slot: Slot, statuses: tuple[StepStatus, ...]) -> int:
    return int(
        session.connection().scalar(
            select(func.count()).where(slot.scope, WorkflowStep.status.in_(statuses))
        )
        or 0
    )


def may_claim(
    session: Session, step_id: uuid.UUID, slots: list[Slot], queued_at: Any, now: datetime
) -> tuple[bool, list[StepMessage]]:
    """Under the slots' locks: whether the step may run now (every slot has room and no
    step of its slots was throttled before it was queued). If not, it is throttled, and
    older throttled steps that fit are queued (their messages are returned)."""
    _lock(session, slots)
    room = all(_count(session, s, (StepStatus.RUNNING,)) < s.limit for s in slots)
    if room:
        older = select(WorkflowStep.id).where(
            WorkflowStep.status == StepStatus.THROTTLED, *[s.scope for s in slots[:1]]
        )
        if queued_at is not None:
            older = older.where(WorkflowStep.queued_at <= queued_at)
        if session.connection().scalar(older.limit(1)) is None:
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
    return False, (wake(session, slots, now) if room else [])


def wake(session: Session, slots: list[Slot], now: datetime) -> list[StepMessage]:
    """Queue the oldest throttled steps of the first slot into the room every slot has
    (steps holding a slot: running, or queued and about to claim it)."""
    if not slots:
        return []
    _lock(session, slots)
    free = min(s.limit - _count(session, s, HOLDING) for s in slots)
    if free <= 0:
        return []
    oldest = (
        select(WorkflowStep.id)
        .where(slots[0].scope, UNTHROTTLE.guard())
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


def wake_throttled(session: Session, key: str, now: datetime) -> list[StepMessage]:
    """An attempt with concurrency key ``key`` stopped running: its slots' room goes to
    the key's oldest throttled steps."""
    return wake(session, slots_of(session, key, tenant_of_key(key)), now)


def make_room(
    session: Session, key: str | None, tenant_id: uuid.UUID, quota: int | None, now: datetime
) -> list[StepMessage]:
    """An attempt with concurrency key ``key`` (None: none) of tenant ``tenant_id`` (its
    quota of running steps ``quota``, None: none) stopped running: the room it left in its
    key's and its tenant's slots goes to their oldest throttled steps now, in the
    attempt's own transaction, not at beat's next tick."""
    woken = wake_throttled(session, key, now) if key is not None else []
    if quota is not None:
        woken += wake(session, [tenant_slot(tenant_id, quota)], now)
    return woken


def freed(session: Session, run_id: uuid.UUID, key: str | None, now: datetime) -> list[StepMessage]:
    """:func:`make_room` for an attempt of ``run_id``, its tenant's quota read here (a
    completion on PostgreSQL has it from its one statement)."""
    tenant_id, quota = (
        session.connection()
        .execute(
            select(Tenant.id, Tenant.max_running_steps)
            .join(WorkflowRun, WorkflowRun.tenant_id == Tenant.id)
            .where(WorkflowRun.id == run_id)
        )
        .one()
    )
    return make_room(session, key, tenant_id, None if quota is None else int(quota), now)


def wake_all(session: Session, now: datetime, limit: int = 100) -> list[StepMessage]:
    """Beat's safety net: every key and every tenant quota with throttled steps gets the
    room its slots have."""
    messages: list[StepMessage] = []
    keys = session.connection().scalars(
        select(WorkflowStep.concurrency_key)
        .where(WorkflowStep.status == StepStatus.THROTTLED)
        .distinct()
        .limit(limit)
    )
    for key in list(keys):
        if key is not None:
            messages += wake_throttled(session, key, now)
    tenants = (
        session.connection()
        .execute(
            select(Tenant.id, Tenant.max_running_steps)
            .where(
                Tenant.max_running_steps.is_not(None),
                exists().where(
                    WorkflowRun.tenant_id == Tenant.id,
                    exists().where(
                        WorkflowStep.run_id == WorkflowRun.id,
                        WorkflowStep.status == StepStatus.THROTTLED,
                    ),
                ),
            )
            .limit(limit)
        )
        .all()
    )
    for tenant_id, quota in tenants:
        messages += wake(session, [tenant_slot(tenant_id, int(quota or 1))], now)
    return messages


def set_quota(session: Session, tenant: str, max_running_steps: int | None) -> int | None:
    """Set a tenant's quota of running steps (None removes it); creates the tenant."""
    limits.check_text("tenant", tenant, limits.TENANT_MAX)
    if max_running_steps is not None:
        limits.check_int("max_running_steps", max_running_steps, 1, 1_000_000)
    tenant_id = ensure_tenant(session, tenant).id
    session.connection().execute(
        update(Tenant).where(Tenant.id == tenant_id).values(max_running_steps=max_running_steps)
    )
    return max_running_steps


def quota_of(session: Session, tenant_id: uuid.UUID) -> int | None:
    """The tenant's quota of running steps (None: none)."""
    found = session.connection().scalar(
        select(Tenant.max_running_steps).where(Tenant.id == tenant_id)
    )
    return None if found is None else int(found)
