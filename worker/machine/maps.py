"""Map steps: one element step per item of a list an upstream step returned.

A map step (``map: {over: "split.items", task: ..., max_parallel: N}``) never runs code of
its own. When its upstream succeeds, the completion that releases it expands it in the
same transaction: one element step per item (``key[i]``, inputs ``item`` and ``index``),
the first ``max_parallel`` queued and the rest pending. Each element's completion frees
its slot for the next pending one (lowest index first) and counts itself off the map
step; the one that takes the count to 0 joins the map: the map step succeeds with the
elements' outputs as a list, in order, and its own dependents are released.

Every one of these writes is in the transaction of the completion that causes it, under
the run row's lock, so after a crash the map resumes at its exact frontier: elements
that succeeded are committed and never run again, the rest are pending or queued.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.orm import Session

from db.models import WorkflowRun, WorkflowStep
from db.states import RunStatus, StepStatus
from worker import limits
from worker.definitions.spec import ConcurrencySpec, MapSpec
from worker.errors import DefinitionError
from worker.ids import new_id
from worker.machine.concurrency import render_key
from worker.machine.ending import end_run, finish_run
from worker.machine.events import add_event
from worker.machine.messages import MESSAGE_COLUMNS, Released, StepMessage, to_messages
from worker.machine.rollup import output_value
from worker.machine.transitions import JOIN_MAP, RELEASE

#: An element holds a slot of its map while it is in one of these.
ACTIVE = (
    StepStatus.QUEUED,
    StepStatus.THROTTLED,
    StepStatus.RUNNING,
    StepStatus.RETRYING,
    StepStatus.WAITING,
)


@dataclass(frozen=True)
class Joined:
    """A map step that joined (succeeded): its dependents are released next, like any
    completed step's; ``finished`` holds what finishing its run set going, if it did."""

    map_step_id: uuid.UUID
    finished: Released


def element_key(map_key: str, index: int) -> str:
    """The key of element ``index`` of map step ``map_key`` (brackets: never a user key)."""
    return f"{map_key}[{index}]"


def items_at(output: Any, spec: MapSpec) -> list[Any]:
    """The list at ``spec.over`` inside the upstream's output; MapError naming what is wrong."""
    value = output
    walked = spec.upstream
    for field in spec.path:
        if not isinstance(value, dict) or field not in value:
            raise MapError(f"map over {spec.over!r}: the output of {walked!r} has no {field!r}")
        value = value[field]
        walked += f".{field}"
    if not isinstance(value, list):
        raise MapError(
            f"map over {spec.over!r}: {walked!r} is a {type(value).__name__}, not a list"
        )
    if len(value) > limits.MAP_ITEMS_MAX:
        raise MapError(
            f"map over {spec.over!r}: {len(value)} items; a map takes at most "
            f"{limits.MAP_ITEMS_MAX}"
        )
    return value


class MapError(Exception):
    """A map step's list is missing or unusable: its run fails with this message."""


def expand_map(
    session: Session, map_step_id: uuid.UUID, now: datetime
) -> tuple[list[StepMessage], Joined | None]:
    """Create the elements of a map step whose upstream succeeded; the ones to send, and
    the map step itself when it joined at once (an empty list).

    A list that is missing, not a list, too long or stored as a blob fails the run with a
    message naming the field; an empty list joins the map at once (an empty list).
    """
    node = (
        session.connection()
        .execute(
            select(
                WorkflowStep.run_id,
                WorkflowStep.key,
                WorkflowStep.map,
                WorkflowStep.retry,
                WorkflowStep.max_attempts,
                WorkflowStep.timeout_s,
                WorkflowStep.queue,
                WorkflowStep.priority,
                WorkflowStep.rate_limits,
            ).where(WorkflowStep.id == map_step_id)
        )
        .one()
    )
    column = dict(node.map)
    limit = column.pop("concurrency", None)
    spec = MapSpec.model_validate(column)
    upstream = (
        session.connection()
        .execute(
            select(WorkflowStep.output, WorkflowStep.output_blob_key).where(
                WorkflowStep.run_id == node.run_id,
                WorkflowStep.key == spec.upstream,
            )
        )
        .one()
    )
    try:
        if upstream.output_blob_key is not None:
            raise MapError(
                f"map over {spec.over!r}: the output of {spec.upstream!r} was stored as a blob "
                "(over CAIRN_INLINE_LIMIT_BYTES); return the list inline, or return keys of "
                "artifacts to map over"
            )
        items = items_at(upstream.output, spec)
    except MapError as exc:
        _fail(session, node.run_id, node.key, str(exc), now)
        return [], None
    keys: list[str | None] = [None] * len(items)
    if items and limit is not None:
        run_inputs, tenant_id = (
            session.connection()
            .execute(
                select(WorkflowRun.inputs, WorkflowRun.tenant_id).where(
                    WorkflowRun.id == node.run_id
                )
            )
            .one()
        )
        concurrency = ConcurrencySpec.model_validate(limit)
        try:
            keys = [
                render_key(
                    tenant_id,
                    concurrency,
                    dict(run_inputs) | {"item": item, "index": i},
                    f"steps.{node.key}.concurrency",
                )
                for i, item in enumerate(items)
            ]
        except DefinitionError as exc:
            _fail(session, node.run_id, node.key, f"{exc.field}: {exc.message}", now)
            return [], None
    if items:
        session.connection().execute(
            insert(WorkflowStep),
            [
                {
                    "id": new_id(),
                    "run_id": node.run_id,
                    "key": element_key(node.key, i),
                    "task": spec.task,
                    "status": StepStatus.PENDING,
                    "attempt": 0,
                    "max_attempts": node.max_attempts,
                    "pending_upstream": 0,
                    "retry": node.retry,
                    "timeout_s": node.timeout_s,
                    "queue": node.queue,
                    "priority": node.priority,
                    "inputs": {"item": item, "index": i},
                    "map_parent_id": map_step_id,
                    "map_index": i,
                    "rate_limits": node.rate_limits,
                    "concurrency_key": keys[i],
                    "concurrency_limit": concurrency.limit if keys[i] else None,
                    "created_at": now,
                }
                for i, item in enumerate(items)
            ],
        )
    session.connection().execute(
        update(WorkflowStep)
        .where(WorkflowStep.id == map_step_id)
        .values(pending_upstream=len(items), started_at=now)
    )
    session.connection().execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == node.run_id)
        .values(steps_left=WorkflowRun.steps_left + len(items))
    )
    add_event(
        session,
        node.run_id,
        "expand_map",
        now,
        step_id=map_step_id,
        data={"items": len(items), "max_parallel": spec.max_parallel},
    )
    if not items:
        return [], join_map(session, map_step_id, now)
    return fill_slots(session, map_step_id, spec.max_parallel, now), None


def _fail(session: Session, run_id: uuid.UUID, key: str, message: str, now: datetime) -> None:
    end_run(
        session,
        run_id,
        RunStatus.FAILED,
        now,
        kind="fail_run",
        error={"step": key, "type": "MapError", "message": message},
    )


def fill_slots(
    session: Session, map_step_id: uuid.UUID, max_parallel: int, now: datetime
) -> list[StepMessage]:
    """Queue the next pending elements (lowest index first) into the map's free slots."""
    pending = exists().where(WorkflowStep.map_parent_id == map_step_id, RELEASE.guard())
    if not session.connection().scalar(select(pending)):
        return []  # all queued already: no need to count the slots taken
    active = session.connection().scalar(
        select(func.count()).where(
            WorkflowStep.map_parent_id == map_step_id, WorkflowStep.status.in_(ACTIVE)
        )
    )
    free = max_parallel - int(active or 0)
    if free <= 0:
        return []
    nxt = (
        select(WorkflowStep.id)
        .where(WorkflowStep.map_parent_id == map_step_id, RELEASE.guard())
        .order_by(WorkflowStep.map_index)
        .limit(free)
    )
    rows = session.connection().execute(
        update(WorkflowStep)
        .where(WorkflowStep.id.in_(nxt.scalar_subquery()), RELEASE.guard())
        .values(
            status=RELEASE.target,
            attempt=WorkflowStep.attempt + 1,
            queued_at=now,
            dispatched_at=now,
        )
        .returning(*MESSAGE_COLUMNS)
    )
    return to_messages(rows)


def element_done(
    session: Session, map_step_id: uuid.UUID, now: datetime
) -> tuple[list[StepMessage], Joined | None]:
    """An element succeeded: count it off its map; join the map if it was the last,
    else queue the next pending element into the freed slot."""
    left, spec = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == map_step_id, WorkflowStep.status == StepStatus.PENDING)
            .values(pending_upstream=WorkflowStep.pending_upstream - 1)
            .returning(WorkflowStep.pending_upstream, WorkflowStep.map)
        )
        .one()
    )
    if left > 0:
        return fill_slots(session, map_step_id, int(spec["max_parallel"]), now), None
    return [], join_map(session, map_step_id, now)


def join_map(session: Session, map_step_id: uuid.UUID, now: datetime) -> Joined:
    """The map step succeeds with its elements' outputs, in order; when it was the run's
    last step, the run finishes."""
    outputs = [
        output_value(output, blob_key, sha)
        for output, blob_key, sha in session.connection().execute(
            select(WorkflowStep.output, WorkflowStep.output_blob_key, WorkflowStep.output_sha256)
            .where(WorkflowStep.map_parent_id == map_step_id)
            .order_by(WorkflowStep.map_index)
        )
    ]
    run_id = (
        session.connection()
        .execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == map_step_id, JOIN_MAP.guard())
            .values(status=JOIN_MAP.target, output=outputs, finished_at=now)
            .returning(WorkflowStep.run_id)
        )
        .scalar_one()
    )
    steps_left, status = (
        session.connection()
        .execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == run_id)
            .values(steps_left=WorkflowRun.steps_left - 1)
            .returning(WorkflowRun.steps_left, WorkflowRun.status)
        )
        .one()
    )
    add_event(session, run_id, "join_map", now, step_id=map_step_id, data={"items": len(outputs)})
    if steps_left > 0:
        return Joined(map_step_id, Released())
    paused = status == RunStatus.PAUSED
    return Joined(map_step_id, finish_run(session, run_id, now, paused=paused))
