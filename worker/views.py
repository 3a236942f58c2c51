"""Read models: what a run looks like from outside (client, CLI, API)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from db.models import WorkflowRun, WorkflowStep
from db.repositories import CostTotal
from db.states import TERMINAL_RUN


@dataclass(frozen=True)
class StepView:
    """One step of a run."""

    id: uuid.UUID
    key: str
    task: str
    status: str
    attempt: int
    max_attempts: int
    output: dict[str, Any] | None
    error: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, step: WorkflowStep) -> StepView:
        """The view of a step row."""
        return cls(
            step.id,
            step.key,
            step.task,
            step.status,
            step.attempt,
            step.max_attempts,
            step.output,
            step.error,
            step.started_at,
            step.finished_at,
        )


@dataclass(frozen=True)
class RunView:
    """A run with its steps."""

    id: uuid.UUID
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    cost_usd: Decimal
    created_at: datetime
    finished_at: datetime | None
    steps: tuple[StepView, ...]

    @property
    def finished(self) -> bool:
        """True once the run succeeded, failed or was cancelled."""
        return self.status in TERMINAL_RUN

    def step(self, key: str) -> StepView:
        """The step called ``key``."""
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(key)

    @classmethod
    def of(cls, run: WorkflowRun, steps: list[WorkflowStep]) -> RunView:
        """The view of a run row and its step rows."""
        return cls(
            run.id,
            run.status,
            run.inputs,
            run.outputs,
            run.error,
            run.cost_usd,
            run.created_at,
            run.finished_at,
            tuple(StepView.of(s) for s in steps),
        )


@dataclass(frozen=True)
class RunSummary:
    """A run without its steps, for lists."""

    id: uuid.UUID
    status: str
    workflow: str
    version: int
    cost_usd: Decimal
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class StepCost:
    """Money and tokens of one step, all attempts."""

    key: str
    input_tokens: int
    output_tokens: int
    usd: Decimal


@dataclass(frozen=True)
class CostSummary:
    """A run's costs: per step, by provider and model, and the total."""

    run_id: uuid.UUID
    total_usd: Decimal
    steps: tuple[StepCost, ...]
    by_model: tuple[CostTotal, ...]


@dataclass(frozen=True)
class EventView:
    """One entry of a run's event log."""

    at: datetime
    kind: str
    step_key: str | None
    attempt: int | None
    data: dict[str, Any] | None


@dataclass(frozen=True)
class DefinitionView:
    """A stored version of a workflow definition."""

    name: str
    version: int
    checksum: str
    created_at: datetime
    spec: dict[str, Any]


@dataclass(frozen=True)
class ScheduleView:
    """A cron schedule."""

    id: uuid.UUID
    name: str
    workflow: str
    cron: str
    timezone: str
    status: str
    missed_policy: str
    catch_up_max: int
    next_fire_at: datetime | None
    last_fire_at: datetime | None


@dataclass(frozen=True)
class WorkerView:
    """A worker process in the component registry."""

    name: str
    hostname: str
    pid: int
    status: str
    queues: list[Any]
    step_names: list[Any]
    version: str
    heartbeat_at: datetime | None
    stopped_at: datetime | None


@dataclass(frozen=True)
class ArtifactView:
    """An artifact row: which step attempt made which object."""

    name: str
    step_key: str
    attempt: int
    key: str
    size: int
    sha256: str
    content_type: str | None
    created_at: datetime
    deleted_at: datetime | None
