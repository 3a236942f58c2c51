"""State machines as data: every status, what it means, and which changes are allowed.

The tables here are the single source for the CHECK constraints in the schema and for the
engine's guarded UPDATEs (a verb's ``WHERE status IN (...)`` is read from them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from worker.errors import IllegalTransition


class RunStatus(enum.StrEnum):
    """Where a workflow run is."""

    QUEUED = "queued"  #: created and committed; no step has started yet
    RUNNING = "running"  #: at least one step has been claimed
    #: its spend crossed a budget (the run's, or its tenant's daily or monthly limit): no
    #: step runs on until a person approves a new budget (or rejects: the run is cancelled)
    PAUSED = "paused"
    SUCCEEDED = "succeeded"  #: every step succeeded; outputs are final
    FAILED = "failed"  #: a step failed for good; the rest were cancelled
    CANCELLED = "cancelled"  #: someone cancelled it; running attempts are told to stop


class StepStatus(enum.StrEnum):
    """Where one step (a DAG node) is."""

    PENDING = "pending"  #: waiting for its upstream steps to succeed
    QUEUED = "queued"  #: ready; a message was (or is about to be) sent to run it
    #: ready, but its concurrency key is at its limit: no message is out; it is queued
    #: again, oldest first, when an attempt with its key stops running
    THROTTLED = "throttled"
    RUNNING = "running"  #: claimed by a worker that holds its lease
    RETRYING = "retrying"  #: an attempt failed; waiting for next_attempt_at before requeue
    #: its attempt ended waiting for something outside (an approval, a signal, the end of a
    #: sleep, a paused run's new budget); no worker holds it; queued again when it comes
    WAITING = "waiting"
    SUCCEEDED = "succeeded"  #: finished; its output is committed and never recomputed
    FAILED = "failed"  #: failed for good (non-retryable error or attempts exhausted)
    CANCELLED = "cancelled"  #: will not run (run cancelled or failed before it started)


class WorkerStatus(enum.StrEnum):
    """A worker process in the component registry."""

    INITIALIZED = "initialized"  #: process started, not yet consuming
    RUNNING = "running"  #: consuming and heartbeating
    STOPPED = "stopped"  #: shut down cleanly
    ERROR = "error"  #: stopped heartbeating (killed, hung, lost its network)


class ApprovalStatus(enum.StrEnum):
    """A human approval a step waits for."""

    PENDING = "pending"  #: waiting for a decision
    APPROVED = "approved"  #: approved; the step continues
    REJECTED = "rejected"  #: rejected; the step fails
    EXPIRED = "expired"  #: nobody decided before expires_at; its on_timeout policy applied
    CANCELLED = "cancelled"  #: its run ended before anyone decided


class WaitKind(enum.StrEnum):
    """What a waiting step waits for."""

    APPROVAL = "approval"  #: a person's decision on an approval request
    SIGNAL = "signal"  #: a named signal sent to the run
    SLEEP = "sleep"  #: a point in time
    BUDGET = "budget"  #: a new budget for its paused run (not one of the step's own waits)
    CHILD = "child"  #: the end of a child run (``name`` is the child run's id)


class WaitStatus(enum.StrEnum):
    """One wait of a step."""

    WAITING = "waiting"  #: not resolved yet
    DONE = "done"  #: resolved; its result is what the step's call returns on replay


class ApprovalKind(enum.StrEnum):
    """Who raised an approval request."""

    STEP = "step"  #: a step's ctx.wait_for_approval, or a definition's approve gate
    BUDGET = "budget"  #: a run's spend crossed a budget: "raise the budget?"


class TimeoutPolicy(enum.StrEnum):
    """What an approval request nobody decided in time does."""

    FAIL = "fail"  #: the step fails (ApprovalExpired)
    APPROVE = "approve"  #: it is approved by cairn
    ESCALATE = "escalate"  #: a new request goes to the escalate_to group, and is notified


class ScheduleStatus(enum.StrEnum):
    """A cron schedule."""

    ACTIVE = "active"  #: fires on its slots
    PAUSED = "paused"  #: fires nothing until resumed


class MissedPolicy(enum.StrEnum):
    """What a schedule does with slots missed while nothing ticked."""

    SKIP = "skip"  #: fire only the next slot
    CATCH_UP = "catch_up"  #: fire missed slots, at most the schedule's catch_up_max


RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.RUNNING: frozenset(
        {RunStatus.PAUSED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    # Steps already running when the run paused may still finish it, or fail it.
    RunStatus.PAUSED: frozenset(
        {RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.SUCCEEDED: frozenset(),
    # A failed or cancelled run may be retried from its failed steps.
    RunStatus.FAILED: frozenset({RunStatus.RUNNING}),
    RunStatus.CANCELLED: frozenset({RunStatus.RUNNING}),
}

STEP_TRANSITIONS: Mapping[StepStatus, frozenset[StepStatus]] = {
    # A map step succeeds without running: the last of its elements joins it.
    StepStatus.PENDING: frozenset({StepStatus.QUEUED, StepStatus.CANCELLED, StepStatus.SUCCEEDED}),
    StepStatus.QUEUED: frozenset({StepStatus.RUNNING, StepStatus.THROTTLED, StepStatus.CANCELLED}),
    StepStatus.THROTTLED: frozenset({StepStatus.QUEUED, StepStatus.CANCELLED}),
    StepStatus.RUNNING: frozenset(
        {
            StepStatus.SUCCEEDED,
            StepStatus.FAILED,
            StepStatus.RETRYING,
            StepStatus.QUEUED,  # the reaper re-queues an expired lease with attempt + 1
            StepStatus.CANCELLED,
            StepStatus.WAITING,
        }
    ),
    StepStatus.RETRYING: frozenset({StepStatus.QUEUED, StepStatus.CANCELLED}),
    StepStatus.WAITING: frozenset({StepStatus.QUEUED, StepStatus.CANCELLED}),
    StepStatus.SUCCEEDED: frozenset(),
    # A run retry puts failed steps back in the queue and cancelled ones back to pending.
    StepStatus.FAILED: frozenset({StepStatus.QUEUED}),
    StepStatus.CANCELLED: frozenset({StepStatus.PENDING, StepStatus.QUEUED}),
}

WORKER_TRANSITIONS: Mapping[WorkerStatus, frozenset[WorkerStatus]] = {
    WorkerStatus.INITIALIZED: frozenset(
        {WorkerStatus.RUNNING, WorkerStatus.STOPPED, WorkerStatus.ERROR}
    ),
    WorkerStatus.RUNNING: frozenset({WorkerStatus.STOPPED, WorkerStatus.ERROR}),
    WorkerStatus.STOPPED: frozenset(),
    # A worker marked error that heartbeats again was only slow.
    WorkerStatus.ERROR: frozenset({WorkerStatus.RUNNING, WorkerStatus.STOPPED}),
}

#: A run in one of these has ended; only a retry moves it again.
TERMINAL_RUN = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
#: A step in one of these has ended.
TERMINAL_STEP = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED})


def step_sources(target: StepStatus) -> list[str]:
    """Every status from which ``target`` may be reached: the ``WHERE status IN`` of a verb."""
    return sorted(str(s) for s, allowed in STEP_TRANSITIONS.items() if target in allowed)


def check_run_transition(current: RunStatus, target: RunStatus) -> None:
    """Raise :class:`IllegalTransition` unless a run may go from ``current`` to ``target``."""
    if target not in RUN_TRANSITIONS[current]:
        raise IllegalTransition("run", current, target)


def check_step_transition(current: StepStatus, target: StepStatus) -> None:
    """Raise :class:`IllegalTransition` unless a step may go from ``current`` to ``target``."""
    if target not in STEP_TRANSITIONS[current]:
        raise IllegalTransition("step", current, target)


def check_worker_transition(current: WorkerStatus, target: WorkerStatus) -> None:
    """Raise :class:`IllegalTransition` unless a worker may go from ``current`` to ``target``."""
    if target not in WORKER_TRANSITIONS[current]:
        raise IllegalTransition("worker", current, target)


def check_in(column: str, enum_type: type[enum.StrEnum]) -> str:
    """The SQL of a CHECK constraint that holds ``column`` to the values of ``enum_type``."""
    values = ", ".join(f"'{member.value}'" for member in enum_type)
    return f"{column} IN ({values})"
