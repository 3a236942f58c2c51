"""fork_run: a new run that branches off another at one of its steps, with edited inputs.

Every step not downstream of ``from_step`` that succeeded in the parent is reused by
reference: the fork's row is inserted succeeded with the parent's output (the same blob
key when it was stored), its artifact rows point at the same objects, and
``origin_step_id`` names the step whose costs, messages and checkpoints it stands for.
Nothing of it runs or is paid again. ``from_step`` and every step after it run anew with
the edited inputs. The parent may still be running: only its committed successes count.

One transaction: the run, its steps and edges, the copied artifact rows and the branch
row; the fork's id is fixed before the first try, so a retried commit finds its fork.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import Artifact, Branch, WorkflowDefinition, WorkflowRun, WorkflowStep
from db.states import RunStatus, StepStatus
from worker import limits, tracing
from worker.definitions import WorkflowSpec
from worker.errors import DefinitionError, NotFound
from worker.ids import new_id
from worker.machine.definitions import spec_of
from worker.machine.events import add_event
from worker.machine.release import expand_ready_maps
from worker.machine.start import StartedRun, insert_steps, plan_steps
from worker.serialization import encode_checked
from worker.settings import Settings


@dataclass(frozen=True)
class ForkRequest:
    """Fork ``run_id`` at ``from_step``: run inputs edited by ``inputs`` (merged over the
    parent's), and inputs of single steps (``from_step`` or after it) in ``step_inputs``."""

    run_id: uuid.UUID
    from_step: str
    inputs: dict[str, Any] = field(default_factory=dict)
    step_inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    label: str | None = None
    #: Fixed before the first try of the transaction.
    fork_id: uuid.UUID = field(default_factory=new_id)


def check_fork(request: ForkRequest, settings: Settings) -> None:
    """Refuse a malformed request before any row is read or written."""
    limits.check_text("from_step", request.from_step, 200)
    if request.label is not None:
        limits.check_text("label", request.label, 200)
    if not isinstance(request.inputs, dict):
        raise DefinitionError("inputs", "must be a JSON object")
    if not isinstance(request.step_inputs, dict):
        raise DefinitionError("step_inputs", "must be a JSON object of step key -> inputs")
    for key, value in request.step_inputs.items():
        if not isinstance(value, dict):
            raise DefinitionError(f"step_inputs.{key}", "must be a JSON object of inputs")
    for name, value in (("inputs", request.inputs), ("step_inputs", request.step_inputs)):
        encode_checked(
            value, name, max_depth=settings.max_json_depth, limit_bytes=settings.inline_limit_bytes
        )


def downstream_of(spec: WorkflowSpec, key: str) -> set[str]:
    """``key`` and every step that comes after it, directly or not."""
    dependents: dict[str, list[str]] = {s.key: [] for s in spec.steps}
    for s in spec.steps:
        for dep in s.after:
            dependents[dep].append(s.key)
    found, todo = {key}, [key]
    while todo:
        for nxt in dependents[todo.pop()]:
            if nxt not in found:
                found.add(nxt)
                todo.append(nxt)
    return found


def fork_run(
    session: Session, tenant_id: uuid.UUID, settings: Settings, request: ForkRequest, now: datetime
) -> StartedRun:
    """Create the fork (or find it, when this request's commit already landed)."""
    if session.scalar(select(WorkflowRun.id).where(WorkflowRun.id == request.fork_id)):
        return StartedRun(request.fork_id, False, [])
    parent = session.scalar(
        select(WorkflowRun).where(
            WorkflowRun.id == request.run_id, WorkflowRun.tenant_id == tenant_id
        )
    )
    if parent is None:
        raise NotFound(f"run {request.run_id} not found")
    definition = session.get_one(WorkflowDefinition, parent.definition_id)
    spec = spec_of(definition)
    keys = [s.key for s in spec.steps]
    if request.from_step not in keys:
        raise DefinitionError(
            "from_step",
            f"workflow {definition.name!r} has no step {request.from_step!r} "
            f"(its steps: {', '.join(keys)})",
        )
    again = downstream_of(spec, request.from_step)
    for key in request.step_inputs:
        if key not in again:
            raise DefinitionError(
                f"step_inputs.{key}",
                f"names a step this fork does not run again (it runs {request.from_step!r} "
                f"and the steps after it: {', '.join(k for k in keys if k in again)})",
            )
    for name in request.inputs:
        if name in keys:
            raise DefinitionError(
                f"inputs.{name}", "has the name of a step, whose output is passed under it"
            )
    reused = _reusable(session, parent.id, again)
    fork_id = request.fork_id
    session.execute(
        insert(WorkflowRun).values(
            id=fork_id,
            tenant_id=tenant_id,
            project_id=parent.project_id,
            definition_id=parent.definition_id,
            parent_run_id=parent.id,
            status=RunStatus.QUEUED,
            inputs=dict(parent.inputs) | request.inputs,
            budget_usd=parent.budget_usd,
            trace_context=tracing.current_context(),
            steps_left=len(keys) - len(reused),
            created_at=now,
            updated_at=now,
        )
    )
    done = {key: columns for key, (_, columns) in reused.items()}
    planned = plan_steps(
        spec,
        fork_id,
        settings,
        now,
        done=done,
        step_inputs=request.step_inputs,
        tenant_id=tenant_id,
        inputs=dict(parent.inputs) | request.inputs,
    )
    insert_steps(session, planned)
    _copy_artifacts(session, fork_id, {reused[k][0]: planned.ids[k] for k in reused}, now)
    from_step_id = session.scalar(
        select(WorkflowStep.id).where(
            WorkflowStep.run_id == parent.id, WorkflowStep.key == request.from_step
        )
    )
    session.execute(
        insert(Branch).values(
            id=new_id(),
            parent_run_id=parent.id,
            child_run_id=fork_id,
            from_step_id=from_step_id,
            label=request.label,
            created_at=now,
        )
    )
    data = {
        "from_run": str(parent.id),
        "from_step": request.from_step,
        "reused": sorted(reused),
        "inputs": sorted(request.inputs),
        "step_inputs": sorted(request.step_inputs),
    }
    add_event(session, fork_id, "fork_run", now, data=data)
    add_event(
        session,
        parent.id,
        "forked",
        now,
        data={"fork": str(fork_id), "from_step": request.from_step, "label": request.label},
    )
    released = expand_ready_maps(session, fork_id, planned.ready_maps, now)
    return StartedRun(fork_id, True, planned.messages + released.messages)


def _reusable(
    session: Session, parent_id: uuid.UUID, again: set[str]
) -> dict[str, tuple[uuid.UUID, Mapping[str, Any]]]:
    """The parent's succeeded steps outside ``again``: ``key -> (id, columns to copy)``."""
    rows = session.execute(
        select(
            WorkflowStep.id,
            WorkflowStep.key,
            WorkflowStep.attempt,
            WorkflowStep.output,
            WorkflowStep.output_blob_key,
            WorkflowStep.output_sha256,
            WorkflowStep.inputs,
            WorkflowStep.origin_step_id,
            WorkflowStep.started_at,
            WorkflowStep.finished_at,
        ).where(
            WorkflowStep.run_id == parent_id,
            WorkflowStep.status == StepStatus.SUCCEEDED,
            WorkflowStep.map_parent_id.is_(None),
        )
    ).all()
    return {
        row.key: (
            row.id,
            {
                "attempt": row.attempt,
                "output": row.output,
                "output_blob_key": row.output_blob_key,
                "output_sha256": row.output_sha256,
                "inputs": row.inputs,
                # A fork of a fork points at the step that really ran.
                "origin_step_id": row.origin_step_id or row.id,
                "started_at": row.started_at,
                "finished_at": row.finished_at,
            },
        )
        for row in rows
        if row.key not in again
    }


def _copy_artifacts(
    session: Session, fork_id: uuid.UUID, step_ids: Mapping[uuid.UUID, uuid.UUID], now: datetime
) -> None:
    """The reused steps' artifacts, as rows of the fork pointing at the same objects."""
    if not step_ids:
        return
    rows = session.execute(
        select(Artifact).where(Artifact.step_id.in_(list(step_ids)), Artifact.deleted_at.is_(None))
    ).scalars()
    copies = [
        {
            "id": new_id(),
            "run_id": fork_id,
            "step_id": step_ids[a.step_id],
            "attempt": a.attempt,
            "name": a.name,
            "key": a.key,
            "size": a.size,
            "sha256": a.sha256,
            "content_type": a.content_type,
            "created_at": now,
        }
        for a in rows
    ]
    if copies:
        session.execute(insert(Artifact), copies)
