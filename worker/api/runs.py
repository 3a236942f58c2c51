"""Runs: start, list, read (steps, costs, events), cancel and retry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from db.repositories import CostRepository, RunRepository
from db.states import RunStatus
from db.types import utcnow
from db.views import CostSummary, RunView, StepDetail, StepView
from worker import blobs, tracing
from worker.api.bodies import (
    CancelBody,
    CancelledBody,
    EventPage,
    ForkBody,
    RetriedBody,
    RunGraph,
    RunPage,
    StartBody,
    StartedBody,
    StrictJsonRoute,
)
from worker.api.state import ApiState, Caller, State
from worker.diff import RunDiff, diff_runs, load_side
from worker.machine.cancel import cancel_run
from worker.machine.fork import ForkRequest, check_fork, fork_run
from worker.machine.retry_run import retry_run
from worker.machine.start import StartedRun, StartRequest, plan_start, start_run_async

router = APIRouter(prefix="/v1/runs", tags=["runs"], route_class=StrictJsonRoute)

RunId = Annotated[uuid.UUID, "the run's id"]


@router.post(
    "",
    status_code=201,
    responses={200: {"model": StartedBody, "description": "The run this key already made"}},
)
async def start_run(
    body: StartBody, state: State, caller: Caller, response: Response
) -> StartedBody:
    """Start a run; it is committed before any step is sent to a worker.

    The same ``idempotency_key`` (or ``run_id``) returns the run it first made, with 200.
    """
    fields = body.model_dump(exclude_unset=True)
    request = StartRequest.parse({**fields, "tenant": caller.tenant})
    with tracing.start_span("cairn.start_run", workflow=request.workflow or "(spec)"):

        async def start(names: frozenset[str] | None) -> StartedRun:
            return await start_run_async(state.engine, plan_start(state.settings, request, names))

        started = await state.checking_step_names(start)
        await state.send(started.messages)
    if not started.created:
        response.status_code = 200
    return StartedBody(run_id=started.run_id, created=started.created)


@router.get("")
async def list_runs(
    state: State,
    caller: Caller,
    status: RunStatus | None = None,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="Runs created at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[uuid.UUID | None, Query(description="`next_cursor` of a page")] = None,
    idempotency_key: Annotated[
        str | None, Query(max_length=255, description="The run this key started")
    ] = None,
) -> RunPage:
    """The tenant's runs, newest first, a page at a time."""

    def work(session: Session) -> RunPage:
        rows = RunRepository(session, caller.tenant_id).summaries(
            status=status,
            workflow=workflow,
            since=since,
            limit=limit + 1,
            before=cursor,
            idempotency_key=idempotency_key,
        )
        page = list(rows[:limit])
        return RunPage(page, page[-1].id if len(rows) > limit else None)

    return await state.read(work)


@router.get("/{run_id}")
async def get_run(run_id: RunId, state: State, caller: Caller) -> RunView:
    """The run with its steps; outputs kept in the artifact store are fetched and verified."""
    return await _run_view(state, caller.tenant_id, run_id)


@router.get("/{run_id}/steps")
async def list_steps(run_id: RunId, state: State, caller: Caller) -> list[StepView]:
    """The run's steps in creation (topological) order."""
    return list((await _run_view(state, caller.tenant_id, run_id)).steps)


@router.get("/{run_id}/graph")
async def run_graph(run_id: RunId, state: State, caller: Caller) -> RunGraph:
    """The run's DAG: which step runs after which."""
    edges = await state.read(lambda s: RunRepository(s, caller.tenant_id).edges(run_id))
    return RunGraph(edges=[list(e) for e in edges])


@router.get("/{run_id}/steps/{key}")
async def step_detail(
    run_id: RunId, key: Annotated[str, Path(max_length=200)], state: State, caller: Caller
) -> StepDetail:
    """One step with its checkpoints, messages (the conversation), costs and artifacts."""
    return await state.read(lambda s: RunRepository(s, caller.tenant_id).step_detail(run_id, key))


@router.get("/{run_id}/costs")
async def run_costs(run_id: RunId, state: State, caller: Caller) -> CostSummary:
    """The run's costs per step, by provider and model, and in total."""

    def work(session: Session) -> CostSummary:
        run = RunRepository(session, caller.tenant_id).get(run_id)
        return CostRepository(session, caller.tenant_id).summary(run_id, run.cost_usd)

    return await state.read(work)


@router.get("/{run_id}/events")
async def run_events(
    run_id: RunId,
    state: State,
    caller: Caller,
    since: Annotated[
        uuid.UUID | None, Query(description="`next_since` of the last page: events after it")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> EventPage:
    """The run's event log, oldest first; poll with ``since`` to follow a live run."""

    def work(session: Session) -> EventPage:
        events = list(
            RunRepository(session, caller.tenant_id).events(run_id, since=since, limit=limit)
        )
        return EventPage(events, events[-1].id if events else since)

    return await state.read(work)


@router.post("/{run_id}/cancel")
async def cancel(
    run_id: RunId, state: State, caller: Caller, body: CancelBody | None = None
) -> CancelledBody:
    """Cancel the run; running attempts are told to stop. False if it had already ended."""
    reason = body.reason if body else ""
    done = await state.write(lambda s: cancel_run(s, caller.tenant_id, run_id, utcnow(), reason))
    return CancelledBody(cancelled=done)


@router.post("/{run_id}/retry")
async def retry(run_id: RunId, state: State, caller: Caller) -> RetriedBody:
    """Re-run a failed or cancelled run from the steps that did not succeed."""
    messages = await state.write(lambda s: retry_run(s, caller.tenant_id, run_id, utcnow()))
    await state.send(messages)
    return RetriedBody(queued=len(messages))


@router.post("/{run_id}/fork", status_code=201)
async def fork(run_id: RunId, body: ForkBody, state: State, caller: Caller) -> StartedBody:
    """A new run branching off this one (which may still run) at ``from_step``: the steps
    not after it that succeeded are reused, never run or paid again; ``from_step`` and
    the steps after it run with the edited inputs."""
    request = ForkRequest(run_id, body.from_step, body.inputs, body.step_inputs, body.label)
    check_fork(request, state.settings)
    started = await state.write(
        lambda s: fork_run(s, caller.tenant_id, state.settings, request, utcnow())
    )
    await state.send(started.messages)
    return StartedBody(run_id=started.run_id, created=started.created)


@router.get("/{run_id}/diff/{other_id}")
async def diff(run_id: RunId, other_id: RunId, state: State, caller: Caller) -> RunDiff:
    """This run (a) against another of its workflow (b), step by step: which inputs,
    outputs, artifacts (by sha256) and costs differ, as JSON paths."""

    def work(session: Session) -> RunDiff:
        return diff_runs(
            load_side(session, caller.tenant_id, run_id),
            load_side(session, caller.tenant_id, other_id),
        )

    return await state.read(work)


async def _run_view(state: ApiState, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunView:
    view, steps = await state.read(lambda s: RunRepository(s, tenant_id).view(run_id))
    if not any(s.output_blob_key for s in steps):
        return view
    return await run_in_threadpool(blobs.resolve_run, state.store, view, steps)
