"""start_run: a run, all its steps and edges in ONE transaction; roots queued.

Nothing is sent here: the caller dispatches the returned messages after the commit, so a
message never names a row that is not committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from db.errors import is_foreign_key_violation
from db.models import StepEdge, WorkflowRun, WorkflowStep
from db.repositories import ProjectRepository, ensure_tenant
from db.session import run_transaction, run_transaction_async
from db.states import RunStatus, StepStatus
from db.types import utcnow
from worker import limits, tracing
from worker.definitions import WorkflowSpec, parse_spec, validate_spec
from worker.definitions.dag import topological_order
from worker.definitions.spec import ApprovalGate, StepSpec
from worker.errors import DefinitionError, NotFound
from worker.ids import new_id, parse_id
from worker.machine import start_pg
from worker.machine.concurrency import render_key
from worker.machine.definitions import find_definition, spec_of, store_definition
from worker.machine.events import add_event
from worker.machine.messages import MESSAGE_COLUMNS, StepMessage, to_messages
from worker.serialization import checksum, encode_checked
from worker.settings import Settings


class StartRequest(BaseModel):
    """What a caller asks for: a workflow (by name, or a spec) with inputs.

    One model for every door (the Client, ``cairn start``, the ``cairn.start_run`` task):
    :meth:`parse` reads it from JSON-like keyword arguments, refusing unknown names and
    mistyped values with a :class:`DefinitionError` naming the field. What the database
    would refuse is checked by :func:`check_request`.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    tenant: str
    workflow: str | None = None
    #: A WorkflowSpec, or its JSON/YAML text or dict: parsed by :func:`check_request`.
    spec: Any = None
    version: int | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    run_id: uuid.UUID | None = None
    project: str = "default"
    budget_usd: Decimal | None = None
    #: 0 (lowest) to 9 (highest) for every step of this run, over the definition's.
    priority: int | None = None

    @field_validator("spec")
    @classmethod
    def _spec_shape(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, WorkflowSpec | dict | str | bytes):
            raise ValueError("must be a workflow definition (a JSON object or its text)")
        return value

    @field_validator("run_id", mode="before")
    @classmethod
    def _run_id(cls, value: Any) -> Any:
        return parse_id(value, "run_id") if isinstance(value, str) else value

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return value if value is None else limits.check_int("version", value, 1)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        return value if value is None else limits.check_int("priority", value, 0, 9)

    @field_validator("budget_usd", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Any:
        return value if value is None else limits.check_money("budget_usd", value)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> StartRequest:
        """The request in ``data``; :class:`DefinitionError` naming the first bad field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "request"
            if error["type"] == "extra_forbidden":
                raise DefinitionError(
                    field, f"is not an argument of a start request ({', '.join(cls.model_fields)})"
                ) from None
            raise DefinitionError(field, error["msg"].removeprefix("Value error, ")) from None


@dataclass(frozen=True)
class StartedRun:
    """The run's id, whether this call created it, and the steps to dispatch."""

    run_id: uuid.UUID
    created: bool
    messages: list[StepMessage]


def check_request(
    request: StartRequest, settings: Settings, registered: Collection[str] | None
) -> WorkflowSpec | None:
    """Refuse a bad request before any row is written; the spec when one was given."""
    if (request.workflow is None) == (request.spec is None):
        raise DefinitionError("workflow", "give either a workflow name or a spec, not both")
    limits.check_text("tenant", request.tenant, limits.TENANT_MAX)
    limits.check_text("project", request.project, limits.PROJECT_MAX)
    if request.workflow is not None:
        limits.check_text("workflow", request.workflow, limits.WORKFLOW_NAME_MAX)
    if request.version is not None:
        limits.check_int("version", request.version, 1)
    if request.idempotency_key is not None:
        limits.check_text("idempotency_key", request.idempotency_key, limits.IDEMPOTENCY_KEY_MAX)
    if request.budget_usd is not None:
        limits.check_money("budget_usd", request.budget_usd)
    if not isinstance(request.inputs, dict):
        raise DefinitionError("inputs", "must be a JSON object")
    encode_checked(
        request.inputs,
        "inputs",
        max_depth=settings.max_json_depth,
        limit_bytes=settings.inline_limit_bytes,
    )
    if request.spec is None:
        return None
    spec = parse_spec(request.spec)
    validate_spec(spec, registered)
    _check_inputs_against(spec, request.inputs)
    return spec


@dataclass(frozen=True)
class StartPlan:
    """A checked request with its run id fixed: the work of one start transaction.

    The id is fixed before the first try: a transaction run again after a commit whose
    outcome was lost finds the run it made, instead of making a second one.
    """

    settings: Settings
    request: StartRequest
    spec: WorkflowSpec | None
    registered: Collection[str] | None
    #: A child run: ``(parent run id, parent step id)``.
    parent: tuple[uuid.UUID, uuid.UUID] | None = None
    #: The trace context the start was made in (OpenTelemetry), kept on the run.
    trace: dict[str, str] | None = None
    #: The start is a transaction of its own: its one statement may commit itself
    #: (``Prepared.execute(alone=True)``). Not for a start inside other work (a child).
    alone: bool = False
    #: The run id was made here, not the caller's: a run with it is this start's.
    own_id: bool = False

    def verify(self, session: Session) -> StartedRun | None:
        """The run this start made, read back after its commit was lost (None: not
        made). Only a run id made by the plan proves it; with the caller's, the start
        runs again and finds the run (not created) as any repeated start would."""
        run_id = self.request.run_id
        if not self.own_id or run_id is None:
            return None
        if session.scalar(select(WorkflowRun.id).where(WorkflowRun.id == run_id)) is None:
            return None
        queued = session.execute(
            select(*MESSAGE_COLUMNS).where(
                WorkflowStep.run_id == run_id, WorkflowStep.status == StepStatus.QUEUED
            )
        )
        return StartedRun(run_id, True, to_messages(queued))

    def __call__(self, session: Session) -> StartedRun:
        """Create the run in ``session`` (or find the one this request already made)."""
        return _start(
            session,
            self.settings,
            self.request,
            self.spec,
            self.registered,
            self.parent,
            self.trace,
            self.alone,
        )


#: A start that loses a unique-index race to a concurrent caller runs again this many times.
_START_TRIES = 5


def plan_start(
    settings: Settings, request: StartRequest, registered: Collection[str] | None = None
) -> StartPlan:
    """Refuse a bad request before any row is written; the plan of its transaction."""
    spec = check_request(request, settings, registered)
    own_id = request.run_id is None
    if own_id:
        request = request.model_copy(update={"run_id": new_id()})
    trace = tracing.current_context()
    return StartPlan(settings, request, spec, registered, trace=trace, own_id=own_id)


def start_run(
    engine: Engine,
    settings: Settings,
    request: StartRequest,
    registered: Collection[str] | None = None,
) -> StartedRun:
    """Create the run (or find the one with the same idempotency key or run id).

    Twenty callers racing with one idempotency key get one run: the loser of the unique
    index race runs again and finds the winner's run.
    """
    plan = replace(plan_start(settings, request, registered), alone=True)
    for tries in range(_START_TRIES):
        try:
            return run_transaction(engine, plan, verify=plan.verify)
        except IntegrityError:
            if tries == _START_TRIES - 1:
                raise
            # A concurrent caller created the tenant, project or run first: look again.
    raise AssertionError("unreachable")  # pragma: no cover


async def start_run_async(engine: AsyncEngine, plan: StartPlan) -> StartedRun:
    """:func:`start_run` on an async engine (the HTTP API), same transaction, same rules."""
    for tries in range(_START_TRIES):
        try:
            return await run_transaction_async(engine, plan, verify=plan.verify)
        except IntegrityError:
            if tries == _START_TRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class _Definition:
    """What a start needs of a stored definition."""

    id: uuid.UUID
    name: str
    version: int
    spec: WorkflowSpec


class _Ids:
    """Ids this process has seen committed: tenants, projects, definitions by checksum.

    Rows are immutable but may be deleted (cascades from a tenant or project). A stale id
    makes the run's INSERT fail its foreign key: the start clears this cache and runs
    again (``start_run`` retries an IntegrityError), so a deletion costs one retry, never
    a wrong row. Latest versions are never cached: another process may register one.
    """

    def __init__(self) -> None:
        self.tenants: dict[str, uuid.UUID] = {}
        self.projects: dict[tuple[uuid.UUID, str], uuid.UUID] = {}
        self.definitions: dict[tuple[uuid.UUID, str, int | None], _Definition] = {}

    def clear(self) -> None:
        """Forget everything (after a foreign key said an id is gone)."""
        self.tenants.clear()
        self.projects.clear()
        self.definitions.clear()

    def tenant(self, session: Session, name: str) -> uuid.UUID:
        found = self.tenants.get(name)
        if found is None:
            found = self.tenants[name] = ensure_tenant(session, name).id
        return found

    def project(self, session: Session, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
        found = self.projects.get((tenant_id, name))
        if found is None:
            found = ProjectRepository(session, tenant_id).ensure(name).id
            self.projects[(tenant_id, name)] = found
        return found

    def stored(
        self, session: Session, tenant_id: uuid.UUID, project_id: uuid.UUID, spec: WorkflowSpec
    ) -> _Definition:
        key = (project_id, checksum(spec.body()), spec.version)
        found = self.definitions.get(key)
        if found is None:
            row = store_definition(session, tenant_id, project_id, spec)
            found = self.definitions[key] = _Definition(row.id, row.name, row.version, spec)
        return found

    def named(
        self, session: Session, project_id: uuid.UUID, name: str, version: int | None
    ) -> _Definition:
        key = (project_id, f"name:{name}", version)
        found = self.definitions.get(key) if version is not None else None
        if found is None:
            row = find_definition(session, project_id, name, version)
            found = _Definition(row.id, row.name, row.version, spec_of(row))
            if version is not None:
                self.definitions[key] = found
        return found


_ids = _Ids()


def _start(
    session: Session,
    settings: Settings,
    request: StartRequest,
    spec: WorkflowSpec | None,
    registered: Collection[str] | None,
    parent: tuple[uuid.UUID, uuid.UUID] | None = None,
    trace: dict[str, str] | None = None,
    alone: bool = False,
) -> StartedRun:
    try:
        return _insert_run(session, settings, request, spec, registered, parent, trace, alone)
    except IntegrityError as exc:
        if is_foreign_key_violation(exc):
            _ids.clear()  # a cached id is gone; the caller runs the start again
        raise


def _insert_run(
    session: Session,
    settings: Settings,
    request: StartRequest,
    spec: WorkflowSpec | None,
    registered: Collection[str] | None,
    parent: tuple[uuid.UUID, uuid.UUID] | None,
    trace: dict[str, str] | None,
    alone: bool,
) -> StartedRun:
    tenant_id = _ids.tenant(session, request.tenant)
    project_id = _ids.project(session, tenant_id, request.project)
    if spec is not None:
        definition = _ids.stored(session, tenant_id, project_id, spec)
    else:
        assert request.workflow is not None
        try:
            definition = _ids.named(session, project_id, request.workflow, request.version)
        except DefinitionError:
            # The cached project may be gone (deleted, or the database replaced): look the
            # names up again before saying the workflow is not registered.
            _ids.clear()
            tenant_id = _ids.tenant(session, request.tenant)
            project_id = _ids.project(session, tenant_id, request.project)
            definition = _ids.named(session, project_id, request.workflow, request.version)
        spec = definition.spec
        validate_spec(spec, registered)
        _check_inputs_against(spec, request.inputs)

    now = utcnow()
    run_id = request.run_id or new_id()
    conn = session.connection()
    # Idempotency by the unique keys (run id; tenant + idempotency key), not a read first:
    # the INSERT that loses to an existing run inserts nothing, and that run is returned.
    values = {
        "id": run_id,
        "tenant_id": tenant_id,
        "project_id": project_id,
        "definition_id": definition.id,
        "status": RunStatus.QUEUED.value,
        "inputs": request.inputs,
        "idempotency_key": request.idempotency_key,
        "budget_usd": request.budget_usd,
        "parent_run_id": parent[0] if parent else None,
        "parent_step_id": parent[1] if parent else None,
        "trace_context": trace,
        "steps_left": len(spec.steps),
        "created_at": now,
        "updated_at": now,
    }
    event = {"workflow": definition.name, "version": definition.version}
    planned = plan_steps(
        spec,
        run_id,
        settings,
        now,
        priority=request.priority,
        tenant_id=tenant_id,
        inputs=request.inputs,
    )
    if conn.dialect.name == "postgresql":
        # The run, its start event, its steps and edges in one round trip, its commit
        # too when it goes alone (the ids were known: no statement came before it).
        inserted = start_pg.insert_run(
            session,
            values | {"cost_usd": Decimal(0)},
            new_id(),
            event,
            planned.rows,
            planned.edges,
            alone=alone,
        )
    else:
        inserted = conn.execute(_INSERT_RUN, values).first() is not None
        if inserted:
            add_event(session, run_id, "start_run", now, data=event)
            insert_steps(session, planned)
    if not inserted:
        existing = _existing_run(session, tenant_id, request)
        if existing is None:  # pragma: no cover - the conflict names one of the two keys
            raise NotFound(f"run {run_id} conflicts with a run that is gone; start again")
        return StartedRun(existing, False, [])
    return StartedRun(run_id, True, planned.messages)  # a map is never a root


@dataclass
class PlannedSteps:
    """The rows of a new run's steps and edges, and what to do once they are inserted."""

    ids: dict[str, uuid.UUID]
    rows: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    #: Steps queued at once: their messages go out after the commit.
    messages: list[StepMessage]
    #: Map steps whose upstream already succeeded: expanded once the rows are in.
    ready_maps: list[uuid.UUID]


def plan_steps(
    spec: WorkflowSpec,
    run_id: uuid.UUID,
    settings: Settings,
    now: datetime,
    *,
    done: Mapping[str, Mapping[str, Any]] | None = None,
    step_inputs: Mapping[str, dict[str, Any]] | None = None,
    priority: int | None = None,
    tenant_id: uuid.UUID | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> PlannedSteps:
    """Plan a run's steps: those in ``done`` inserted succeeded with the given columns (a
    fork's reused steps), the ones whose every upstream is done queued, the rest pending.

    ``step_inputs`` are inputs of one step only (a fork's edits), kept on its row;
    ``priority`` (the run's) replaces every step's own. Concurrency keys are rendered
    over ``inputs`` (the run's) under ``tenant_id``.
    """
    done = done or {}
    step_inputs = step_inputs or {}
    by_key = {s.key: s for s in spec.steps}
    ids = {key: new_id() for key in topological_order({s.key: s.after for s in spec.steps})}
    planned = PlannedSteps(ids, [], [], [], [])
    for key, step_id in ids.items():
        step = by_key[key]
        queue = step.queue or settings.default_queue
        step_priority = step.priority if priority is None else priority
        row: dict[str, Any] = {
            "id": step_id,
            "run_id": run_id,
            "key": key,
            "task": step.runs,
            "attempt": 0,
            "max_attempts": step.retry.max_attempts,
            "pending_upstream": sum(1 for dep in step.after if dep not in done),
            "retry": step.retry.model_dump(mode="json"),
            "timeout_s": step.timeout_s,
            "queue": queue,
            "priority": step_priority,
            "approve": gate_columns(step.approve) if step.approve else None,
            "map": _map_column(step, spec),
            "rate_limits": list(step.rate_limits) or None,
            "inputs": step_inputs.get(key),
            **_concurrency(step, spec, tenant_id, dict(inputs or {}) | step_inputs.get(key, {})),
            "status": StepStatus.PENDING,
            # Every row has every key (one executemany): a reused step's columns or None.
            "output": None,
            "output_blob_key": None,
            "output_sha256": None,
            "origin_step_id": None,
            "started_at": None,
            "finished_at": None,
            "queued_at": None,
            "dispatched_at": None,
            "created_at": now,
        }
        if key in done:
            row |= {"status": StepStatus.SUCCEEDED, "pending_upstream": 0, **done[key]}
        elif row["pending_upstream"] == 0 and step.map is not None:
            planned.ready_maps.append(step_id)
        elif row["pending_upstream"] == 0:
            row |= {"status": StepStatus.QUEUED, "attempt": 1, "queued_at": now}
            row["dispatched_at"] = now
            planned.messages.append(
                StepMessage(step_id, 1, run_id, key, step.runs, queue, step_priority)
            )
        planned.rows.append(row)
    planned.edges = [
        {"id": new_id(), "run_id": run_id, "upstream_id": ids[dep], "downstream_id": ids[s.key]}
        for s in spec.steps
        for dep in s.after
    ]
    return planned


def _map_column(step: StepSpec, spec: WorkflowSpec) -> dict[str, Any] | None:
    """A map step's ``map`` column: its map, and the concurrency its elements take."""
    if step.map is None:
        return None
    column = step.map.model_dump(mode="json")
    limit = step.concurrency or spec.concurrency
    if limit is not None:
        column["concurrency"] = limit.model_dump(mode="json")
    return column


def _concurrency(
    step: StepSpec, spec: WorkflowSpec, tenant_id: uuid.UUID | None, values: dict[str, Any]
) -> dict[str, Any]:
    """The step's concurrency columns (a map step's elements render theirs when made)."""
    limit = step.concurrency or spec.concurrency
    where = f"steps.{step.key}.concurrency" if step.concurrency else "concurrency"
    if limit is None or tenant_id is None:
        return {"concurrency_key": None, "concurrency_limit": None}
    if step.map is not None:  # checked now, rendered per element with its item and index
        render_key(tenant_id, limit, values | {"item": "", "index": 0}, where)
        return {"concurrency_key": None, "concurrency_limit": None}
    return {
        "concurrency_key": render_key(tenant_id, limit, values, where),
        "concurrency_limit": limit.limit,
    }


_RUNS = cast(Table, WorkflowRun.__table__)
#: The run's INSERT that inserts nothing when the run exists already (SQLite).
_INSERT_RUN = sqlite.insert(_RUNS).on_conflict_do_nothing().returning(_RUNS.c.id)
_INSERT_STEPS = insert(cast(Table, WorkflowStep.__table__))
_INSERT_EDGES = insert(cast(Table, StepEdge.__table__))


def insert_steps(session: Session, planned: PlannedSteps) -> None:
    """Insert the planned steps and edges (rows of one shape, so one executemany each)."""
    conn = session.connection()
    # On the tables, not the ORM entities: the ORM's bulk bookkeeping was a third of a
    # start's CPU.
    conn.execute(_INSERT_STEPS, planned.rows)
    if planned.edges:
        conn.execute(_INSERT_EDGES, planned.edges)


def _existing_run(
    session: Session, tenant_id: uuid.UUID, request: StartRequest
) -> uuid.UUID | None:
    """The run this request already made, by idempotency key or client-chosen id."""
    if request.idempotency_key is not None:
        found = session.scalar(
            select(WorkflowRun.id).where(
                WorkflowRun.tenant_id == tenant_id,
                WorkflowRun.idempotency_key == request.idempotency_key,
            )
        )
        if found is not None:
            return found
    if request.run_id is not None:
        owner = session.scalar(
            select(WorkflowRun.tenant_id).where(WorkflowRun.id == request.run_id)
        )
        if owner == tenant_id:
            return request.run_id
        if owner is not None:
            raise NotFound(f"run id {request.run_id} is taken; choose another")
    return None


def _check_inputs_against(spec: WorkflowSpec, inputs: dict[str, Any]) -> None:
    """Inputs may not share a name with a step: step outputs are passed under step keys."""
    keys = {s.key for s in spec.steps}
    for name in inputs:
        if name in keys:
            raise DefinitionError(
                f"inputs.{name}", "has the name of a step, whose output is passed under it"
            )


def gate_columns(gate: ApprovalGate) -> dict[str, Any]:
    """An approval gate as stored and asked: the columns of its approval request."""
    return {
        "title": gate.title,
        "details": gate.details,
        "timeout_s": gate.timeout_s,
        "on_timeout": gate.on_timeout,
        "group_name": gate.group,
        "escalate_to": gate.escalate_to,
    }
