"""Read models: what a run looks like from outside (client, CLI, API).

Each view is built from rows in one place (``View.of(row)``); the repositories return
views, so the Client, the CLI and the HTTP API read through the same queries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from db.models import (
    ApprovalRequest,
    Artifact,
    Schedule,
    Worker,
    WorkflowDefinition,
    WorkflowRun,
    WorkflowStep,
)
from db.states import TERMINAL_RUN


def money(value: Decimal | int | str | None) -> Decimal:
    """An amount in its plainest form: ``0.03``, not ``0.03000000``; ``0``, not ``0E-8``."""
    amount = Decimal(value or 0)
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1))
    return amount.normalize()


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
    #: A fork's reused step: the step (of another run) that ran and whose output this is.
    reused_from: uuid.UUID | None = None
    #: A map element: its map step's key and its index in the list.
    map_of: str | None = None
    map_index: int | None = None
    #: When the attempt was queued: it waited ``started_at - queued_at`` for a worker.
    queued_at: datetime | None = None

    @classmethod
    def of(cls, step: WorkflowStep, map_of: str | None = None) -> StepView:
        """The view of a step row (``map_of``: the key of its map step, for an element)."""
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
            step.origin_step_id,
            map_of,
            step.map_index,
            step.queued_at,
        )


#: The events that end an attempt, and those that do not.
_ATTEMPT_ENDS = frozenset(
    {"complete_step", "fail_step", "release_step", "wait_step", "cancel_step", "reap_step"}
)


def attempts_of(events: Any) -> tuple[dict[str, Any], ...]:
    """A step's attempts from its events ``(attempt, kind, at)`` in order."""
    found: dict[int, dict[str, Any]] = {}
    for attempt, kind, at in events:
        if attempt is None:
            continue
        if kind == "claim_step":
            found[attempt] = {
                "attempt": attempt,
                "started_at": at,
                "ended_at": None,
                "outcome": None,
            }
        elif kind in _ATTEMPT_ENDS and attempt in found and found[attempt]["outcome"] is None:
            found[attempt] |= {"ended_at": at, "outcome": kind}
    return tuple(found[a] for a in sorted(found))


@dataclass(frozen=True)
class StepDetail:
    """A step with what its attempts recorded, for the dashboard's step panel."""

    step: StepView
    #: What the step's code is called with: the run's inputs and its upstream outputs (a
    #: stored output shows as its object key).
    inputs: dict[str, Any]
    #: Each attempt: ``{attempt, started_at, ended_at, outcome}`` (outcome: the verb that
    #: ended it, such as complete_step, fail_step, wait_step; None while it runs).
    attempts: tuple[dict[str, Any], ...]
    #: ``{seq, attempt, at, size, state}``; a state kept in the store shows as its size only.
    checkpoints: tuple[dict[str, Any], ...]
    #: ``{attempt, seq, role, content}``: the conversation, in order.
    messages: tuple[dict[str, Any], ...]
    #: ``{attempt, provider, model, input_tokens, output_tokens, usd}``.
    costs: tuple[dict[str, Any], ...]
    artifacts: tuple[str, ...]

    @classmethod
    def of(
        cls,
        step: WorkflowStep,
        inputs: dict[str, Any],
        events: Any,
        checkpoints: Any,
        messages: Any,
        costs: Any,
        artifacts: list[str],
    ) -> StepDetail:
        """The detail of a step row, its inputs, its events and the rows of its records."""
        return cls(
            StepView.of(step),
            inputs,
            attempts_of(events),
            tuple(
                {
                    "seq": c.seq,
                    "attempt": c.attempt,
                    "at": c.created_at,
                    "size": c.blob_size,
                    "state": c.state,
                }
                for c in checkpoints
            ),
            tuple(
                {"attempt": m.attempt, "seq": m.seq, "role": m.role, "content": m.content}
                for m in messages
            ),
            tuple(
                {
                    "attempt": c.attempt,
                    "provider": c.provider,
                    "model": c.model,
                    "input_tokens": c.input_tokens,
                    "output_tokens": c.output_tokens,
                    "usd": money(c.usd),
                }
                for c in costs
            ),
            tuple(artifacts),
        )


@dataclass(frozen=True)
class ApprovalView:
    """An approval request: who asked what, when it expires, who decided, how."""

    id: uuid.UUID
    run_id: uuid.UUID
    step_key: str | None
    kind: str
    status: str
    title: str
    details: dict[str, Any] | None
    requested_by: str
    group: str | None
    on_timeout: str
    escalate_to: str | None
    escalated_from_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    comment: str | None
    new_budget_usd: Decimal | None

    @classmethod
    def of(cls, row: ApprovalRequest, step_key: str | None) -> ApprovalView:
        """The view of a request row (and the key of the step that asked)."""
        return cls(
            row.id,
            row.run_id,
            step_key,
            row.kind,
            row.status,
            row.title,
            row.details,
            row.requested_by,
            row.group_name,
            row.on_timeout,
            row.escalate_to,
            row.escalated_from_id,
            row.created_at,
            row.expires_at,
            row.decided_by,
            row.decided_at,
            row.comment,
            None if row.new_budget_usd is None else money(row.new_budget_usd),
        )


@dataclass(frozen=True)
class ChildView:
    """A child run, as its parent shows it."""

    run_id: uuid.UUID
    #: The parent's step that started it, and the key it gave the child.
    step: str
    key: str
    workflow: str
    status: str


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
    budget_usd: Decimal | None = None
    #: Why a paused run paused: the budget crossed (``reason``, ``limit_usd``,
    #: ``spent_usd``, ``message``) and the ``approval_id`` that resumes it.
    paused: dict[str, Any] | None = None
    #: The run this one was forked from, or whose step started it (a child run).
    parent_run_id: uuid.UUID | None = None
    #: A child run: the key of the parent's step that started it.
    parent_step: str | None = None
    #: Child runs its steps started, in the order they were started.
    children: tuple[ChildView, ...] = ()

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
    def of(
        cls,
        run: WorkflowRun,
        steps: list[WorkflowStep],
        paused: dict[str, Any] | None = None,
        *,
        parent_step: str | None = None,
        children: tuple[ChildView, ...] = (),
    ) -> RunView:
        """The view of a run row and its step rows (and why it paused, when it did)."""
        keys = {s.id: s.key for s in steps if s.map is not None}
        return cls(
            run.id,
            run.status,
            run.inputs,
            run.outputs,
            run.error,
            money(run.cost_usd),
            run.created_at,
            run.finished_at,
            tuple(
                StepView.of(s, keys.get(s.map_parent_id) if s.map_parent_id else None)
                for s in steps
            ),
            None if run.budget_usd is None else money(run.budget_usd),
            paused,
            run.parent_run_id,
            parent_step,
            children,
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
    steps_total: int = 0
    steps_succeeded: int = 0

    @classmethod
    def of(cls, run: WorkflowRun, workflow: str, version: int, steps: int = 0) -> RunSummary:
        """The summary of a run row, its definition's name and version, and its step count."""
        return cls(
            run.id,
            run.status,
            workflow,
            version,
            money(run.cost_usd),
            run.created_at,
            run.finished_at,
            steps,
            steps - run.steps_left,
        )


@dataclass(frozen=True)
class StepCost:
    """Money and tokens of one step, all attempts."""

    key: str
    input_tokens: int
    output_tokens: int
    usd: Decimal


@dataclass(frozen=True, slots=True)
class CostTotal:
    """Money and tokens summed over a group of cost records."""

    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    usd: Decimal
    records: int


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
    #: Time-ordered (UUIDv7): the cursor to read the events after this one.
    id: uuid.UUID


@dataclass(frozen=True)
class DefinitionView:
    """A stored version of a workflow definition."""

    name: str
    version: int
    checksum: str
    created_at: datetime
    spec: dict[str, Any]

    @classmethod
    def of(cls, d: WorkflowDefinition) -> DefinitionView:
        """The view of a definition row."""
        return cls(d.name, d.version, d.checksum, d.created_at, d.spec)


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

    @classmethod
    def of(cls, r: Schedule) -> ScheduleView:
        """The view of a schedule row."""
        return cls(
            r.id,
            r.name,
            r.workflow,
            r.cron,
            r.timezone,
            r.status,
            r.missed_policy,
            r.catch_up_max,
            r.next_fire_at,
            r.last_fire_at,
        )


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


def worker_view(w: Worker) -> WorkerView:
    """The view of a worker row."""
    return WorkerView(
        w.name,
        w.hostname,
        w.pid,
        w.status,
        w.queues,
        w.step_names,
        w.version,
        w.heartbeat_at,
        w.stopped_at,
    )


def artifact_view(a: Artifact, step_key: str) -> ArtifactView:
    """The view of an artifact row made by step ``step_key``."""
    return ArtifactView(
        a.name,
        step_key,
        a.attempt,
        a.key,
        a.size,
        a.sha256,
        a.content_type,
        a.created_at,
        a.deleted_at,
    )


@dataclass(frozen=True)
class Activity:
    """A tenant's runs per UTC day and status, and its spend per UTC day."""

    #: ``{day, status, runs}``
    runs_by_day: list[dict[str, Any]]
    #: ``{day, usd}``
    spend_by_day: list[dict[str, Any]]
