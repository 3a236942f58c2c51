"""Every verb, run on rows in every status, makes only changes the transition table allows.

Hypothesis draws a run status and a status for each of three steps (a -> c, b -> c), with
leases (some expired) and backoffs (some due); each verb then runs in its own
transaction. Whatever it writes, every step and run that changed status must have made a
change ``db/states.py`` allows. A verb that refuses (a typed error) must write nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from db.models import StepEdge, Tenant, WorkflowRun, WorkflowStep
from db.session import transaction
from db.states import RUN_TRANSITIONS, STEP_TRANSITIONS, RunStatus, StepStatus
from db.types import utcnow
from tests.support.factories import make_world
from worker.errors import CairnError
from worker.machine.cancel import cancel_run
from worker.machine.claim import claim_step
from worker.machine.complete import complete_step
from worker.machine.ending import end_run
from worker.machine.fail import cancel_step, fail_step, release_step
from worker.machine.lease import Fence
from worker.machine.progress import record_checkpoint
from worker.machine.records import Records
from worker.machine.recovery import reap_expired, redispatch_stale, requeue_retrying
from worker.machine.retry import RetryDecision
from worker.machine.retry_run import retry_run

OWNER = "w:1"
Verb = Callable[[Session, "Scene"], Any]


class Scene:
    """The ids of the drawn rows."""

    def __init__(self, tenant_id: uuid.UUID, run_id: uuid.UUID, steps: list[uuid.UUID]) -> None:
        self.tenant_id, self.run_id, self.steps = tenant_id, run_id, steps

    def fence(self, i: int) -> Fence:
        return Fence(self.steps[i], self.run_id, 1, OWNER)


def _retry_later(s: Session, sc: Scene) -> Any:
    later = RetryDecision(utcnow() + timedelta(seconds=5))
    return fail_step(s, sc.fence(0), "a", {"type": "E"}, later, Records(), utcnow())


VERBS: dict[str, Verb] = {
    "claim": lambda s, sc: claim_step(s, sc.steps[0], 1, OWNER, 30, utcnow()),
    "complete": lambda s, sc: complete_step(s, sc.fence(0), {"ok": 1}, Records(), utcnow()),
    "complete_b": lambda s, sc: complete_step(s, sc.fence(1), {}, Records(), utcnow()),
    "fail": lambda s, sc: fail_step(
        s, sc.fence(0), "a", {"type": "E"}, RetryDecision(None), Records(), utcnow()
    ),
    "retry_later": _retry_later,
    "release": lambda s, sc: release_step(
        s, sc.fence(0), {"type": "S"}, utcnow(), Records(), utcnow()
    ),
    "cancel_step": lambda s, sc: cancel_step(s, sc.fence(0), Records(), utcnow()),
    "checkpoint": lambda s, sc: record_checkpoint(
        s, sc.fence(0), 1, {"i": 1}, Records(), 30, utcnow()
    ),
    "reap": lambda s, sc: reap_expired(s, utcnow(), 3),
    "requeue_due": lambda s, sc: requeue_retrying(s, utcnow()),
    "redispatch": lambda s, sc: redispatch_stale(s, utcnow(), 0),
    "fail_run": lambda s, sc: end_run(s, sc.run_id, RunStatus.FAILED, utcnow(), kind="x"),
    "cancel_run": lambda s, sc: cancel_run(s, sc.tenant_id, sc.run_id, utcnow()),
    "retry_run": lambda s, sc: retry_run(s, sc.tenant_id, sc.run_id, utcnow()),
}


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The table is the same on both; SQLite keeps a thousand examples fast."""
    return str(request.param)


def _scene(
    engine: Engine, run_status: RunStatus, statuses: list[StepStatus], expired: bool
) -> Scene:
    now = utcnow()
    with transaction(engine) as s:
        for model in (WorkflowRun, Tenant):
            s.execute(delete(model))
        world = make_world(s, "t", idempotency_key=None)
        c = WorkflowStep(run_id=world.run_id, key="c", task="noop", retry={}, queue="cairn")
        s.add(c)
        s.flush()
        a, b = world.step_ids
        s.execute(delete(StepEdge).where(StepEdge.run_id == world.run_id))
        s.add_all(
            [
                StepEdge(run_id=world.run_id, upstream_id=a, downstream_id=c.id),
                StepEdge(run_id=world.run_id, upstream_id=b, downstream_id=c.id),
            ]
        )
        ids = [a, b, c.id]
        lease = now + timedelta(seconds=-5 if expired else 30)
        for step_id, status in zip(ids, statuses, strict=True):
            s.execute(
                update(WorkflowStep)
                .where(WorkflowStep.id == step_id)
                .values(
                    status=status,
                    attempt=1,
                    max_attempts=2,
                    pending_upstream=2 if step_id == c.id else 0,
                    lease_owner=OWNER,
                    lease_expires_at=lease,
                    next_attempt_at=now - timedelta(seconds=1),
                    dispatched_at=now - timedelta(seconds=60),
                    started_at=now,
                    queued_at=now,
                )
            )
        s.execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == world.run_id)
            .values(status=run_status, steps_left=3, cost_usd=Decimal(0))
        )
        return Scene(world.tenant_id, world.run_id, ids)


def _statuses(engine: Engine, scene: Scene) -> tuple[str, dict[uuid.UUID, str]]:
    with transaction(engine) as s:
        run = s.scalar(select(WorkflowRun.status).where(WorkflowRun.id == scene.run_id))
        steps = dict(
            s.execute(
                select(WorkflowStep.id, WorkflowStep.status).where(
                    WorkflowStep.run_id == scene.run_id
                )
            ).all()
        )
    return str(run), {k: str(v) for k, v in steps.items()}


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    verb=st.sampled_from(sorted(VERBS)),
    run_status=st.sampled_from(list(RunStatus)),
    statuses=st.lists(st.sampled_from(list(StepStatus)), min_size=3, max_size=3),
    expired=st.booleans(),
)
def test_every_change_a_verb_makes_is_allowed_by_the_table(
    engine: Engine,
    verb: str,
    run_status: RunStatus,
    statuses: list[StepStatus],
    expired: bool,
) -> None:
    scene = _scene(engine, run_status, statuses, expired)
    run_before, steps_before = _statuses(engine, scene)
    refused = False
    try:
        with transaction(engine) as s:
            VERBS[verb](s, scene)
    except CairnError:
        refused = True
    run_after, steps_after = _statuses(engine, scene)
    if refused:
        assert (run_after, steps_after) == (run_before, steps_before), f"{verb} wrote, then refused"
    if run_after != run_before:
        allowed = RUN_TRANSITIONS[RunStatus(run_before)]
        assert RunStatus(run_after) in allowed, f"{verb}: run {run_before} -> {run_after}"
    for step_id, before in steps_before.items():
        after = steps_after[step_id]
        if after != before:
            allowed_steps = STEP_TRANSITIONS[StepStatus(before)]
            assert StepStatus(after) in allowed_steps, f"{verb}: step {before} -> {after}"
