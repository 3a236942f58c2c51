"""Child runs: a step starts runs of other workflows and waits for their ends.

``start_child`` starts the run in the parent attempt's own transaction, linked to the
step (``parent_run_id``, ``parent_step_id``) and idempotent per (step, key): a parent
step that runs again (a crash, a wait resumed) finds the child it started, never a
second one. Waiting is a wait of kind ``child`` (see :mod:`worker.machine.waits`): the
step's attempt ends and frees its worker; the child's success wakes it in the same
transaction, and beat's timer wakes it for a child that failed or was cancelled.

A failed child fails the waiting step by its retry policy (:class:`ChildRunFailed`,
retryable); the step's next attempt re-opens that same child from its failed steps, so
what succeeded in the child is neither run nor paid again. Ending a parent early (failed
or cancelled) cancels its children (``ending.cancel_children``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import Project, StepWait, Tenant, WorkflowRun, WorkflowStep
from db.states import RunStatus, WaitKind, WaitStatus
from worker import limits
from worker.errors import ChildRunFailed, StaleAttempt
from worker.machine.lease import Fence
from worker.machine.retry_run import retry_run
from worker.machine.start import StartedRun, StartRequest, plan_start
from worker.settings import Settings

#: Child keys are part of an idempotency key, with the parent step's id.
CHILD_KEY_MAX = 200


def child_idempotency_key(step_id: uuid.UUID, key: str) -> str:
    """The idempotency key of the child ``key`` of a step: one child per (step, key)."""
    return f"child:{step_id}:{key}"


def start_child(
    session: Session,
    fence: Fence,
    settings: Settings,
    registered: Collection[str] | None,
    workflow: str | dict[str, Any],
    inputs: dict[str, Any],
    key: str,
    now: datetime,
) -> StartedRun:
    """Start (or find) the child ``key`` of the fenced attempt's step.

    ``workflow`` is a registered name, or a definition. A child found failed or
    cancelled because the step failed on it (its last error names it) is re-opened.
    """
    limits.check_text("key", key, CHILD_KEY_MAX)
    step = session.execute(select(WorkflowStep.error).where(fence.where())).first()
    if step is None:
        raise StaleAttempt(
            f"step {fence.step_id} attempt {fence.attempt} lost its lease; no child started"
        )
    tenant, project = session.execute(
        select(Tenant.name, Project.name)
        .join(WorkflowRun, WorkflowRun.tenant_id == Tenant.id)
        .join(Project, Project.id == WorkflowRun.project_id)
        .where(WorkflowRun.id == fence.run_id)
    ).one()
    request = StartRequest.parse(
        {
            "tenant": tenant,
            "project": project,
            "inputs": inputs,
            "idempotency_key": child_idempotency_key(fence.step_id, key),
            **({"workflow": workflow} if isinstance(workflow, str) else {"spec": workflow}),
        }
    )
    plan = replace(plan_start(settings, request, registered), parent=(fence.run_id, fence.step_id))
    started = plan(session)
    if started.created:
        return started
    return _reopen_if_failed_on(session, fence, started, step.error, now)


def _reopen_if_failed_on(
    session: Session,
    fence: Fence,
    started: StartedRun,
    error: dict[str, Any] | None,
    now: datetime,
) -> StartedRun:
    child = session.execute(
        select(WorkflowRun.status, WorkflowRun.tenant_id).where(WorkflowRun.id == started.run_id)
    ).one()
    failed_on_it = (
        error is not None
        and error.get("type") == ChildRunFailed.__name__
        and str(started.run_id) in str(error.get("message", ""))
    )
    if child.status not in (RunStatus.FAILED, RunStatus.CANCELLED) or not failed_on_it:
        return started
    messages = retry_run(session, child.tenant_id, started.run_id, now)
    # The step's recorded wait for the child's failure is forgotten: it waits anew.
    session.execute(
        delete(StepWait).where(
            StepWait.step_id == fence.step_id,
            StepWait.child_run_id == started.run_id,
            StepWait.kind == WaitKind.CHILD,
            StepWait.status == WaitStatus.DONE,
        )
    )
    return StartedRun(started.run_id, False, messages)
