"""Definitions, schedules, workers and the tenant's cost totals."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from db.repositories import (
    ActivityRepository,
    CostRepository,
    ProjectRepository,
    WorkerRepository,
    ensure_tenant,
)
from db.states import MissedPolicy, ScheduleStatus
from db.types import utcnow
from db.views import Activity, DefinitionView, ScheduleView, WorkerView
from worker import limits
from worker.api.bodies import DefinitionBody, ScheduleBody, StrictJsonRoute, TenantCosts
from worker.api.state import Caller, State
from worker.definitions import parse_spec, validate_spec
from worker.errors import DefinitionError, NotFound
from worker.machine.definitions import find_definition, store_definition
from worker.machine.schedules import add_schedule, delete_schedule, set_status

router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)
Project = Annotated[str, Query(min_length=1, max_length=limits.PROJECT_MAX)]


@router.post("/definitions", status_code=201, tags=["definitions"])
async def register_definition(body: DefinitionBody, state: State, caller: Caller) -> DefinitionView:
    """Validate and store a definition; the same spec returns its existing version."""
    spec = parse_spec(body.spec)

    async def check(names: frozenset[str] | None) -> None:
        validate_spec(spec, names)

    await state.checking_step_names(check)

    def work(session: Session) -> DefinitionView:
        tenant = ensure_tenant(session, caller.tenant)
        project = ProjectRepository(session, tenant.id).ensure(body.project)
        return DefinitionView.of(store_definition(session, tenant.id, project.id, spec))

    return await state.write(work)


@router.get("/definitions", tags=["definitions"])
async def list_definitions(
    state: State, caller: Caller, project: Project = "default"
) -> list[DefinitionView]:
    """Every stored version of every workflow of the project."""

    def work(session: Session) -> list[DefinitionView]:
        repo = ProjectRepository(session, caller.tenant_id)
        found = repo.find(project)
        return list(repo.definitions(found.id)) if found else []

    return await state.read(work)


@router.get("/definitions/{name}", tags=["definitions"])
async def get_definition(
    name: Annotated[str, "workflow name"],
    state: State,
    caller: Caller,
    version: Annotated[int | None, Query(ge=1, le=limits.INT_MAX)] = None,
    project: Project = "default",
) -> DefinitionView:
    """A stored definition: the newest version unless ``version`` is given."""

    def work(session: Session) -> DefinitionView:
        found = ProjectRepository(session, caller.tenant_id).find(project)
        if found is None:
            raise NotFound(f"no project {project!r}")
        try:
            return DefinitionView.of(find_definition(session, found.id, name, version))
        except DefinitionError as exc:  # a missing resource here, not a bad field
            raise NotFound(exc.reason) from None

    return await state.read(work)


@router.post("/schedules", status_code=201, tags=["schedules"])
async def create_schedule(body: ScheduleBody, state: State, caller: Caller) -> ScheduleView:
    """Start ``workflow`` on every slot of ``cron``; the first slot is the next one."""

    def work(session: Session) -> ScheduleView:
        schedule_id = add_schedule(
            session,
            caller.tenant,
            body.name,
            body.workflow,
            body.cron,
            utcnow(),
            timezone=body.timezone,
            inputs=body.inputs,
            version=body.version,
            project=body.project,
            missed_policy=MissedPolicy(body.missed_policy),
            catch_up_max=body.catch_up_max,
        )
        return _schedule(session, caller.tenant_id, schedule_id)

    return await state.write(work)


@router.get("/schedules", tags=["schedules"])
async def list_schedules(state: State, caller: Caller) -> list[ScheduleView]:
    """The tenant's schedules, by name."""
    return await state.read(lambda s: list(ProjectRepository(s, caller.tenant_id).schedules()))


@router.get("/schedules/{schedule_id}", tags=["schedules"])
async def get_schedule(schedule_id: uuid.UUID, state: State, caller: Caller) -> ScheduleView:
    """One schedule."""
    return await state.read(lambda s: _schedule(s, caller.tenant_id, schedule_id))


@router.post("/schedules/{schedule_id}/pause", tags=["schedules"])
async def pause_schedule(schedule_id: uuid.UUID, state: State, caller: Caller) -> ScheduleView:
    """Stop firing until resumed."""
    return await _set(state, caller.tenant_id, schedule_id, ScheduleStatus.PAUSED)


@router.post("/schedules/{schedule_id}/resume", tags=["schedules"])
async def resume_schedule(schedule_id: uuid.UUID, state: State, caller: Caller) -> ScheduleView:
    """Fire again, from the next slot after now."""
    return await _set(state, caller.tenant_id, schedule_id, ScheduleStatus.ACTIVE)


@router.delete("/schedules/{schedule_id}", status_code=204, tags=["schedules"])
async def remove_schedule(schedule_id: uuid.UUID, state: State, caller: Caller) -> Response:
    """Delete a schedule; the runs it started stay."""
    await state.write(lambda s: delete_schedule(s, caller.tenant_id, schedule_id))
    return Response(status_code=204)


@router.get("/workers", tags=["workers"])
async def list_workers(state: State, _caller: Caller) -> list[WorkerView]:
    """Every worker process in the registry, newest first (workers serve every tenant)."""
    return await state.read(lambda s: WorkerRepository(s).views())


@router.get("/costs", tags=["costs"])
async def tenant_costs(state: State, caller: Caller) -> TenantCosts:
    """The tenant's costs over every run, by provider and model."""
    return TenantCosts(
        await state.read(lambda s: CostRepository(s, caller.tenant_id).totals_by_model())
    )


async def _set(
    state: State, tenant_id: uuid.UUID, schedule_id: uuid.UUID, status: ScheduleStatus
) -> ScheduleView:
    def work(session: Session) -> ScheduleView:
        set_status(session, tenant_id, schedule_id, status, utcnow())
        return _schedule(session, tenant_id, schedule_id)

    return await state.write(work)


def _schedule(session: Session, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleView:
    return ProjectRepository(session, tenant_id).schedule(schedule_id)


@router.get("/activity")
async def activity(
    state: State,
    caller: Caller,
    days: Annotated[int, Query(ge=1, le=366, description="How many days back")] = 14,
) -> Activity:
    """The tenant's runs per UTC day and status, and its spend per UTC day."""
    since = utcnow() - timedelta(days=days)
    return await state.read(lambda s: ActivityRepository(s, caller.tenant_id).activity(since))
