"""Workflow runs and their steps, as one tenant sees them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import aliased

from db.models import (
    ApprovalRequest,
    Artifact,
    Checkpoint,
    CostRecord,
    Message,
    RunEvent,
    StepEdge,
    WorkflowDefinition,
    WorkflowRun,
    WorkflowStep,
)
from db.repositories.base import TenantRepository
from db.states import ApprovalKind, ApprovalStatus, RunStatus
from db.views import ChildView, EventView, RunSummary, RunView, StepDetail
from worker.errors import NotFound


def upstream_outputs(step_id: uuid.UUID) -> Select[str, Any, Any, Any]:
    """``(key, output, blob key, sha256)`` of each step ``step_id`` runs after."""
    return (
        select(
            WorkflowStep.key,
            WorkflowStep.output,
            WorkflowStep.output_blob_key,
            WorkflowStep.output_sha256,
        )
        .join(StepEdge, StepEdge.upstream_id == WorkflowStep.id)
        .where(StepEdge.downstream_id == step_id)
    )


class RunRepository(TenantRepository):
    """Read and delete the runs of one tenant."""

    def get(self, run_id: uuid.UUID) -> WorkflowRun:
        """The run ``run_id``; :class:`NotFound` if missing or another tenant's."""
        run = self.session.scalar(self._runs().where(WorkflowRun.id == run_id))
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return run

    def find_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        """The run started with idempotency key ``key``, or None."""
        return self.session.scalar(self._runs().where(WorkflowRun.idempotency_key == key))

    def list(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> Sequence[WorkflowRun]:
        """The tenant's runs, newest first, filtered by status, workflow name and time."""
        query = self._runs()
        if status is not None:
            query = query.where(WorkflowRun.status == status)
        if workflow is not None:
            query = query.join(
                WorkflowDefinition, WorkflowDefinition.id == WorkflowRun.definition_id
            ).where(WorkflowDefinition.name == workflow)
        if since is not None:
            query = query.where(WorkflowRun.created_at >= since)
        return self.session.scalars(query.order_by(WorkflowRun.id.desc()).limit(limit)).all()

    def steps(self, run_id: uuid.UUID) -> Sequence[WorkflowStep]:
        """The steps of a run in creation (topological) order; :class:`NotFound` if foreign."""
        self.get(run_id)
        return self._steps(run_id)

    def view(self, run_id: uuid.UUID) -> tuple[RunView, Sequence[WorkflowStep]]:
        """The run with its steps as a view (and the step rows, for stored outputs)."""
        run = self.get(run_id)
        steps = self._steps(run_id)
        paused = None
        if run.status == RunStatus.PAUSED:
            found = self.session.execute(
                select(ApprovalRequest.id, ApprovalRequest.details).where(
                    ApprovalRequest.run_id == run_id,
                    ApprovalRequest.kind == ApprovalKind.BUDGET,
                    ApprovalRequest.status == ApprovalStatus.PENDING,
                )
            ).first()
            if found is not None:
                paused = dict(found.details or {}) | {"approval_id": str(found.id)}
        parent_step = None
        if run.parent_step_id is not None:
            parent_step = self.session.scalar(
                select(WorkflowStep.key).where(WorkflowStep.id == run.parent_step_id)
            )
        view = RunView.of(
            run, list(steps), paused, parent_step=parent_step, children=self._children(run_id)
        )
        return view, steps

    def _children(self, run_id: uuid.UUID) -> tuple[ChildView, ...]:
        rows = self.session.execute(
            select(
                WorkflowRun.id,
                WorkflowStep.key,
                WorkflowRun.idempotency_key,
                WorkflowDefinition.name,
                WorkflowRun.status,
            )
            .join(WorkflowStep, WorkflowStep.id == WorkflowRun.parent_step_id)
            .join(WorkflowDefinition, WorkflowDefinition.id == WorkflowRun.definition_id)
            .where(WorkflowRun.parent_run_id == run_id, WorkflowRun.tenant_id == self.tenant_id)
            .order_by(WorkflowRun.id)
        ).all()
        return tuple(
            ChildView(child, step, (key or "::").split(":", 2)[2], workflow, status)
            for child, step, key, workflow, status in rows
        )

    def summaries(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        before: uuid.UUID | None = None,
        idempotency_key: str | None = None,
    ) -> Sequence[RunSummary]:
        """The tenant's runs as summaries, newest first (filters as :meth:`list`).

        ``before`` is a cursor: the id of the last run of the previous page (run ids are
        time-ordered UUIDv7, so "older" is "smaller").
        """
        total = (
            select(func.count())
            .where(WorkflowStep.run_id == WorkflowRun.id)
            .correlate(WorkflowRun)
            .scalar_subquery()
        )
        query = (
            select(WorkflowRun, WorkflowDefinition.name, WorkflowDefinition.version, total)
            .join(WorkflowDefinition, WorkflowDefinition.id == WorkflowRun.definition_id)
            .where(WorkflowRun.tenant_id == self.tenant_id)
        )
        if status is not None:
            query = query.where(WorkflowRun.status == status)
        if workflow is not None:
            query = query.where(WorkflowDefinition.name == workflow)
        if since is not None:
            query = query.where(WorkflowRun.created_at >= since)
        if idempotency_key is not None:
            query = query.where(WorkflowRun.idempotency_key == idempotency_key)
        if before is not None:
            query = query.where(WorkflowRun.id < before)
        rows = self.session.execute(query.order_by(WorkflowRun.id.desc()).limit(limit)).all()
        return [RunSummary.of(run, name, version, steps) for run, name, version, steps in rows]

    def events(
        self, run_id: uuid.UUID, *, since: uuid.UUID | None = None, limit: int | None = None
    ) -> Sequence[EventView]:
        """The run's event log, oldest first, after event ``since`` when given.

        :class:`NotFound` if the run is foreign.
        """
        self.get(run_id)
        query = (
            select(
                RunEvent.created_at,
                RunEvent.kind,
                WorkflowStep.key,
                RunEvent.attempt,
                RunEvent.data,
                RunEvent.id,
            )
            .outerjoin(WorkflowStep, WorkflowStep.id == RunEvent.step_id)
            .where(RunEvent.run_id == run_id)
            .order_by(RunEvent.id)
        )
        if since is not None:
            query = query.where(RunEvent.id > since)
        if limit is not None:
            query = query.limit(limit)
        return [EventView(*row) for row in self.session.execute(query).all()]

    def edges(self, run_id: uuid.UUID) -> Sequence[tuple[str, str]]:
        """The run's DAG as ``(upstream key, downstream key)`` pairs."""
        self.get(run_id)
        up, down = aliased(WorkflowStep), aliased(WorkflowStep)
        rows = self.session.execute(
            select(up.key, down.key)
            .select_from(StepEdge)
            .join(up, up.id == StepEdge.upstream_id)
            .join(down, down.id == StepEdge.downstream_id)
            .where(StepEdge.run_id == run_id)
        )
        return [(a, b) for a, b in rows]

    def step_detail(self, run_id: uuid.UUID, key: str) -> StepDetail:
        """One step with its checkpoints, messages, costs and artifacts, every attempt."""
        self.get(run_id)
        step = self.session.scalar(
            select(WorkflowStep).where(WorkflowStep.run_id == run_id, WorkflowStep.key == key)
        )
        if step is None:
            raise NotFound(f"run {run_id} has no step {key!r}")
        checkpoints = self.session.execute(
            select(
                Checkpoint.seq,
                Checkpoint.attempt,
                Checkpoint.created_at,
                Checkpoint.blob_size,
                Checkpoint.state,
            )
            .where(Checkpoint.step_id == step.id)
            .order_by(Checkpoint.seq)
        ).all()
        messages = self.session.execute(
            select(Message.attempt, Message.seq, Message.role, Message.content)
            .where(Message.step_id == step.id)
            .order_by(Message.attempt, Message.seq)
        ).all()
        costs = self.session.execute(
            select(
                CostRecord.attempt,
                CostRecord.provider,
                CostRecord.model,
                CostRecord.input_tokens,
                CostRecord.output_tokens,
                CostRecord.usd,
            )
            .where(CostRecord.step_id == step.id)
            .order_by(CostRecord.attempt, CostRecord.seq)
        ).all()
        artifacts = self.session.scalars(
            select(Artifact.name).where(Artifact.step_id == step.id).order_by(Artifact.name)
        ).all()
        upstream = self.session.execute(upstream_outputs(step.id)).all()
        run_inputs = self.session.scalar(select(WorkflowRun.inputs).where(WorkflowRun.id == run_id))
        inputs = dict(run_inputs or {}) | {
            k: (out if blob is None else {"stored_as": blob, "sha256": sha})
            for k, out, blob, sha in upstream
        }
        events = self.session.execute(
            select(RunEvent.attempt, RunEvent.kind, RunEvent.created_at)
            .where(RunEvent.step_id == step.id)
            .order_by(RunEvent.id)
        ).all()
        return StepDetail.of(step, inputs, events, checkpoints, messages, costs, [*artifacts])

    def _steps(self, run_id: uuid.UUID) -> Sequence[WorkflowStep]:
        return self.session.scalars(
            select(WorkflowStep).where(WorkflowStep.run_id == run_id).order_by(WorkflowStep.id)
        ).all()

    def step(self, step_id: uuid.UUID) -> WorkflowStep:
        """One step of one of the tenant's runs; :class:`NotFound` if missing or foreign."""
        step = self.session.scalar(
            select(WorkflowStep)
            .join(WorkflowRun, WorkflowRun.id == WorkflowStep.run_id)
            .where(WorkflowStep.id == step_id, WorkflowRun.tenant_id == self.tenant_id)
        )
        if step is None:
            raise NotFound(f"step {step_id} not found")
        return step

    def delete(self, run_id: uuid.UUID) -> None:
        """Delete a run with its steps and records; :class:`NotFound` if foreign."""
        result = self.session.execute(
            delete(WorkflowRun).where(
                WorkflowRun.id == run_id, WorkflowRun.tenant_id == self.tenant_id
            )
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"run {run_id} not found")

    def _runs(self) -> Select[WorkflowRun]:
        return select(WorkflowRun).where(WorkflowRun.tenant_id == self.tenant_id)
