"""The world of the retention tests: a finished run owning a row in every table that hangs
off a run, and objects in the store; a live run beside it; counts of both."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select, update

from db.base import Base
from db.models import (
    ApprovalRequest,
    Branch,
    Notification,
    Signal,
    StepWait,
    WorkflowMetric,
    WorkflowRun,
    WorkflowStep,
)
from db.session import transaction
from db.types import utcnow
from tests.support.stack import Stack
from worker.artifacts import ArtifactStore
from worker.client import Client

#: Every kind of row and object a run can own: costs, messages and checkpoints (loop), an
#: artifact, a large output and a large checkpoint state in the store, DAG edges (join).
WORLD = {
    "name": "retained",
    "steps": [
        {"key": "loop", "task": "t.loop"},
        {"key": "art", "task": "t.artifact"},
        {"key": "big", "task": "t.big_output"},
        {"key": "ckpt", "task": "t.big_checkpoint", "retry": {"max_attempts": 2}},
        {"key": "join", "task": "t.join", "after": ["loop", "art", "big", "ckpt"]},
    ],
}
#: A run that never ends by itself: one step running (until cancelled), one queued on a
#: queue nobody consumes.
LIVE = {
    "name": "live",
    "steps": [
        {"key": "watch", "task": "t.watch_cancel"},
        {"key": "parked", "task": "t.increment", "queue": "nobody_consumes_this"},
    ],
}
PARKED = {"name": "parked", "steps": [{"key": "p", "task": "t.increment", "queue": "nowhere"}]}
#: Tables that hang off a run; each must hold rows of the world before it is deleted.
OWNED = {
    "workflow_runs",
    "workflow_steps",
    "step_edges",
    "checkpoints",
    "cost_records",
    "messages",
    "approval_requests",
    "branches",
    "workflow_metrics",
    "artifacts",
    "run_events",
    "step_waits",
    "signals",
    "notifications",
}


def owned_rows(
    engine: Engine, run_ids: list[uuid.UUID], step_ids: list[uuid.UUID]
) -> dict[str, int]:
    """Rows of every table that points at one of the runs or steps, by any foreign key."""
    counts: dict[str, int] = {}
    with transaction(engine) as session:
        for table in Base.metadata.sorted_tables:
            conditions = [table.c.id.in_(run_ids)] if table.name == "workflow_runs" else []
            for fk in table.foreign_keys:
                if fk.column.table.name == "workflow_runs":
                    conditions.append(fk.parent.in_(run_ids))
                elif fk.column.table.name == "workflow_steps":
                    conditions.append(fk.parent.in_(step_ids))
            if conditions:
                query = select(func.count()).select_from(table).where(or_(*conditions))
                counts[table.name] = int(session.scalar(query) or 0)
    return counts


def step_ids_of(engine: Engine, run_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    with transaction(engine) as session:
        return list(
            session.scalars(select(WorkflowStep.id).where(WorkflowStep.run_id.in_(run_ids)))
        )


def objects_of(store: ArtifactStore, engine: Engine, run_id: uuid.UUID) -> list[str]:
    with transaction(engine) as session:
        tenant_id = session.scalar(select(WorkflowRun.tenant_id).where(WorkflowRun.id == run_id))
    return store.list_keys(f"{tenant_id}/{run_id}/")


def age(engine: Engine, run_id: uuid.UUID, days: float) -> None:
    """Make the run look as if it ended ``days`` ago."""
    with transaction(engine) as session:
        session.execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == run_id)
            .values(finished_at=utcnow() - timedelta(days=days))
        )


def wait_for_status(client: Client, run_id: uuid.UUID, step: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while client.get_run(run_id).step(step).status != status:
        assert time.monotonic() < deadline, client.get_run(run_id)
        time.sleep(0.1)


def build_world(client: Client) -> tuple[uuid.UUID, uuid.UUID]:
    """A finished run with every kind of row and object, and an ended parent run of it.

    The parent (a cancelled run) and a branch row make the parent link real: the child
    must go first, since the parent's key cascades."""
    engine = client.runtime.engine
    run_id = client.start_run(spec=WORLD)
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    parent_id = client.start_run(spec=PARKED)
    assert client.cancel(parent_id)
    with transaction(engine) as session:
        step = session.scalars(select(WorkflowStep).where(WorkflowStep.run_id == run_id)).first()
        parent_step = session.scalar(
            select(WorkflowStep.id).where(WorkflowStep.run_id == parent_id)
        )
        assert step is not None
        session.execute(
            update(WorkflowRun).where(WorkflowRun.id == run_id).values(parent_run_id=parent_id)
        )
        session.add(Branch(parent_run_id=parent_id, child_run_id=run_id, from_step_id=parent_step))
        tenant_id = session.scalar(select(WorkflowRun.tenant_id).where(WorkflowRun.id == run_id))
        approval = ApprovalRequest(
            tenant_id=tenant_id,
            run_id=run_id,
            step_id=step.id,
            kind="step",
            status="approved",
            title="ship it?",
            requested_by=f"step:{step.key}",
            on_timeout="fail",
        )
        session.add(approval)
        session.flush()
        wait = StepWait(
            run_id=run_id,
            step_id=step.id,
            seq=1,
            kind="approval",
            status="done",
            approval_id=approval.id,
        )
        session.add(wait)
        session.flush()
        session.add(Signal(run_id=run_id, name="go", payload={"x": 1}, wait_id=wait.id))
        session.add(Notification(run_id=run_id, event="approval.decided", data={}))
        session.add(WorkflowMetric(run_id=run_id, step_id=None, name="run_total_s", value=1.0))
    return run_id, parent_id


def start_live(client: Client, stack: Stack) -> uuid.UUID:
    """A run with a step RUNNING and one QUEUED, made to look as if it ended long ago (a
    stale finished_at): only its status keeps it."""
    live_id = client.start_run(spec=LIVE)
    wait_for_status(client, live_id, "watch", "running")
    assert client.get_run(live_id).step("parked").status == "queued"
    age(client.runtime.engine, live_id, 30)
    return live_id


def check_deleted_and_kept(
    client: Client,
    store: ArtifactStore,
    world: tuple[uuid.UUID, uuid.UUID],
    live_id: uuid.UUID,
    delete: Any,
) -> None:
    """Run ``delete()``; the world goes entirely, the live run keeps every row and object."""
    engine = client.runtime.engine
    run_id, parent_id = world
    runs = [run_id, parent_id]
    steps = step_ids_of(engine, runs)
    before = owned_rows(engine, runs, steps)
    assert {t for t, n in before.items() if n == 0} == set(), before
    assert set(before) == OWNED, "a table that points at runs or steps is not covered"
    objects = objects_of(store, engine, run_id)
    assert len(objects) >= 3, objects  # the artifact, the large output, the large state
    live_steps = step_ids_of(engine, [live_id])
    live_before = owned_rows(engine, [live_id], live_steps)
    live_objects = objects_of(store, engine, live_id)

    delete()

    assert owned_rows(engine, runs, steps) == dict.fromkeys(OWNED, 0)
    assert [k for k in objects if store.exists(k)] == []
    assert objects_of(store, engine, run_id) == []
    assert owned_rows(engine, [live_id], live_steps) == live_before
    assert objects_of(store, engine, live_id) == live_objects
    view = client.get_run(live_id)
    assert view.status == "running"
    assert {s.key: s.status for s in view.steps} == {"watch": "running", "parked": "queued"}
