"""Schedules: add, pause, resume, delete, and the tick that fires due slots.

A fired slot starts a run whose idempotency key is ``schedule:<id>:<slot>``: two beats
ticking at once make one run per slot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from db.models import Project, Schedule, Tenant
from db.repositories import ProjectRepository, ensure_tenant
from db.states import MissedPolicy, ScheduleStatus
from worker import limits
from worker.cron import check_cron, due_slots, next_slot
from worker.errors import DefinitionError, NotFound


@dataclass(frozen=True)
class Fire:
    """One slot of one schedule to start a run for."""

    schedule_id: uuid.UUID
    tenant: str
    project: str
    workflow: str
    version: int | None
    inputs: dict[str, Any]
    slot: datetime
    #: The schedule's next_fire_at when the slot was computed (guards the advance).
    expected_next: datetime

    @property
    def idempotency_key(self) -> str:
        """The run's key: the same slot never makes two runs."""
        return f"schedule:{self.schedule_id}:{self.slot.isoformat()}"


def add_schedule(
    session: Session,
    tenant: str,
    name: str,
    workflow: str,
    cron: str,
    now: datetime,
    *,
    timezone: str = "UTC",
    inputs: dict[str, Any] | None = None,
    version: int | None = None,
    project: str = "default",
    missed_policy: MissedPolicy = MissedPolicy.SKIP,
    catch_up_max: int = 0,
) -> uuid.UUID:
    """Store a schedule; its first slot is the first one after ``now``."""
    limits.check_text("name", name, limits.SCHEDULE_NAME_MAX)
    limits.check_text("workflow", workflow, limits.WORKFLOW_NAME_MAX)
    limits.check_text("timezone", timezone, limits.TIMEZONE_MAX)
    limits.check_text("cron", cron, limits.CRON_MAX)
    if version is not None:
        limits.check_int("version", version, 1)
    check_cron(cron, timezone)
    limits.check_int("catch_up_max", catch_up_max, 0)
    t = ensure_tenant(session, tenant)
    p = ProjectRepository(session, t.id).ensure(project)
    if session.scalar(
        select(Schedule.id).where(Schedule.project_id == p.id, Schedule.name == name)
    ):
        raise DefinitionError("name", f"a schedule named {name!r} already exists")
    schedule = Schedule(
        tenant_id=t.id,
        project_id=p.id,
        name=name,
        workflow=workflow,
        workflow_version=version,
        cron=cron,
        timezone=timezone,
        inputs=inputs or {},
        status=ScheduleStatus.ACTIVE,
        missed_policy=missed_policy,
        catch_up_max=catch_up_max,
        next_fire_at=next_slot(cron, timezone, now),
        created_at=now,
    )
    session.add(schedule)
    session.flush()
    return schedule.id


def set_status(
    session: Session,
    tenant_id: uuid.UUID,
    schedule_id: uuid.UUID,
    status: ScheduleStatus,
    now: datetime,
) -> None:
    """Pause or resume; a resumed schedule fires from its next slot after ``now``."""
    schedule = _owned(session, tenant_id, schedule_id)
    values: dict[str, Any] = {"status": status}
    if status == ScheduleStatus.ACTIVE and schedule.status != ScheduleStatus.ACTIVE:
        values["next_fire_at"] = next_slot(schedule.cron, schedule.timezone, now)
    session.execute(update(Schedule).where(Schedule.id == schedule_id).values(**values))


def delete_schedule(session: Session, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> None:
    """Delete a schedule (its runs stay)."""
    _owned(session, tenant_id, schedule_id)
    session.execute(delete(Schedule).where(Schedule.id == schedule_id))


def due_fires(session: Session, now: datetime) -> list[Fire]:
    """The slots every active schedule should fire now (read only).

    The caller starts the runs first and then calls :func:`advance_schedule`: a crash in
    between fires the same slots again at the next tick, and their idempotency keys make
    the second start a no-op. Two beats ticking at once are safe for the same reason.
    """
    due = session.execute(
        select(Schedule, Tenant.name, Project.name)
        .join(Tenant, Tenant.id == Schedule.tenant_id)
        .join(Project, Project.id == Schedule.project_id)
        .where(Schedule.status == ScheduleStatus.ACTIVE, Schedule.next_fire_at <= now)
    ).all()
    fires: list[Fire] = []
    for s, tenant, project in due:
        assert s.next_fire_at is not None
        slots = due_slots(
            s.cron, s.timezone, s.next_fire_at, now, MissedPolicy(s.missed_policy), s.catch_up_max
        )
        fires += [
            Fire(
                s.id,
                tenant,
                project,
                s.workflow,
                s.workflow_version,
                s.inputs,
                slot,
                s.next_fire_at,
            )
            for slot in slots
        ]
    return fires


def advance_schedule(session: Session, fire: Fire, now: datetime) -> bool:
    """Move a schedule past ``now`` once its fires started; False if another tick did."""
    schedule = session.get(Schedule, fire.schedule_id)
    if schedule is None:
        return False
    moved = session.execute(
        update(Schedule)
        .where(Schedule.id == fire.schedule_id, Schedule.next_fire_at == fire.expected_next)
        .values(
            next_fire_at=next_slot(schedule.cron, schedule.timezone, now), last_fire_at=fire.slot
        )
        .returning(Schedule.id)
    ).first()
    return moved is not None


def _owned(session: Session, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> Schedule:
    schedule = session.scalar(
        select(Schedule).where(Schedule.id == schedule_id, Schedule.tenant_id == tenant_id)
    )
    if schedule is None:
        raise NotFound(f"schedule {schedule_id} not found")
    return schedule
