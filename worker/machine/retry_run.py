"""retry_run: start a failed or cancelled run again from the steps that did not succeed.

Succeeded steps keep their outputs and are not re-run. Failed steps are queued again with
a fresh attempt budget; cancelled ones go back to pending (or queued, when everything
upstream already succeeded).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import StepEdge, WorkflowRun, WorkflowStep
from db.states import RunStatus, StepStatus
from worker.errors import IllegalTransition, NotFound
from worker.machine.events import add_event
from worker.machine.maps import fill_slots, join_map
from worker.machine.messages import MESSAGE_COLUMNS, StepMessage, to_messages
from worker.machine.release import expand_ready_maps, release_joined
from worker.machine.transitions import REOPEN_READY, REOPEN_RUN, REOPEN_WAITING, queued


def retry_run(
    session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID, now: datetime
) -> list[StepMessage]:
    """Re-open the tenant's failed or cancelled run; return the steps to dispatch."""
    run = session.scalar(
        select(WorkflowRun)
        .where(WorkflowRun.id == run_id, WorkflowRun.tenant_id == tenant_id)
        .with_for_update()
    )
    if run is None:
        raise NotFound(f"run {run_id} not found")
    if run.status not in REOPEN_RUN.sources:
        raise IllegalTransition("run", run.status, REOPEN_RUN.target)
    running = session.scalar(
        select(func.count()).where(
            WorkflowStep.run_id == run_id, WorkflowStep.status == StepStatus.RUNNING
        )
    )
    if running:
        raise IllegalTransition(
            "run", f"{run.status} with {running} step(s) still stopping", RunStatus.RUNNING
        )
    steps = session.execute(
        select(
            WorkflowStep.id,
            WorkflowStep.status,
            WorkflowStep.attempt,
            WorkflowStep.server_releases,
            WorkflowStep.wait_resumes,
            WorkflowStep.retry,
            WorkflowStep.map,
            WorkflowStep.map_parent_id,
        ).where(WorkflowStep.run_id == run_id)
    ).all()
    succeeded = {s.id for s in steps if s.status == StepStatus.SUCCEEDED}
    maps = _Maps(steps, succeeded)
    edges = session.execute(
        select(StepEdge.upstream_id, StepEdge.downstream_id).where(StepEdge.run_id == run_id)
    ).all()
    messages: list[StepMessage] = []
    for step in steps:
        if step.id in succeeded:
            continue
        waiting = maps.waiting(
            step, sum(1 for up, down in edges if down == step.id and up not in succeeded)
        )
        ready = _ready(step, waiting)
        move = REOPEN_READY if ready else REOPEN_WAITING
        if step.status not in move.sources:
            raise IllegalTransition("step", step.status, move.target)
        values: dict[str, Any] = {
            "status": move.target,
            "pending_upstream": waiting,
            "error": None,
            "next_attempt_at": None,
            "finished_at": None,
            "cancel_requested": False,
            # A fresh budget: as many attempts of its own as the policy gives (those
            # released for server faults, or ended waiting, never counted).
            "max_attempts": step.attempt
            - step.server_releases
            - step.wait_resumes
            + int(step.retry.get("max_attempts", 1)),
        }
        if ready:
            values |= {"attempt": step.attempt + 1, **queued(now)}
        rows = session.execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == step.id, WorkflowStep.status == step.status)
            .values(**values)
            .returning(*MESSAGE_COLUMNS)
        ).all()
        if ready:
            messages += to_messages(rows)
    session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run_id, REOPEN_RUN.guard())
        .values(
            status=REOPEN_RUN.target,
            error=None,
            outputs=None,
            finished_at=None,
            steps_left=len(steps) - len(succeeded),
            updated_at=now,
        )
    )
    messages += maps.restart(session, run_id, now)
    add_event(session, run_id, "retry_run", now, data={"requeued": len(messages)})
    return messages


class _Maps:
    """The map steps of a re-opened run: a map step never runs, it waits for its elements
    left to succeed; one never expanded (its upstream had not succeeded) is expanded."""

    def __init__(self, steps: Any, succeeded: set[uuid.UUID]) -> None:
        self.elements_left: dict[uuid.UUID, int] = {}
        self.expanded: set[uuid.UUID] = set()
        for s in steps:
            if s.map_parent_id is not None:
                self.expanded.add(s.map_parent_id)
                if s.id not in succeeded:
                    self.elements_left[s.map_parent_id] = (
                        self.elements_left.get(s.map_parent_id, 0) + 1
                    )
        self.to_fill: dict[uuid.UUID, int] = {}
        self.to_expand: list[uuid.UUID] = []
        self.to_join: list[uuid.UUID] = []

    def waiting(self, step: Any, upstream_left: int) -> int:
        """What the step waits for once re-opened (its ``pending_upstream``)."""
        if step.map is None:
            return upstream_left
        if step.id in self.expanded:
            left = self.elements_left.get(step.id, 0)
            if left:
                self.to_fill[step.id] = int(step.map["max_parallel"])
            else:  # its last element succeeded after the run had ended: join it now
                self.to_join.append(step.id)
            return left
        if upstream_left == 0:
            self.to_expand.append(step.id)
        return upstream_left

    def restart(self, session: Session, run_id: uuid.UUID, now: datetime) -> list[StepMessage]:
        """Queue elements into their maps' slots; expand the maps never expanded."""
        messages: list[StepMessage] = []
        for map_step_id, max_parallel in self.to_fill.items():
            messages += fill_slots(session, map_step_id, max_parallel, now)
        # As a completion would: an empty list joins at once, and a join may finish the run.
        messages += expand_ready_maps(session, run_id, self.to_expand, now).messages
        for map_step_id in self.to_join:
            joined = join_map(session, map_step_id, now)
            messages += release_joined(session, run_id, joined, now).messages
        return messages


def _ready(step: Any, waiting: int) -> bool:
    """Whether a re-opened step is queued at once: nothing upstream left, not a map step
    (it never runs), and not a cancelled map element (it waits for a slot of its map; a
    failed one takes its slot back at once)."""
    if waiting or step.map is not None:
        return False
    return step.map_parent_id is None or step.status == StepStatus.FAILED
