"""The status changes the verbs make, as values checked against ``db/states.py``.

Each verb names the move it makes (``CLAIM``, ``SUCCEED``, ...): its guard (``WHERE status
IN``) and the status it writes come from here, and each move is checked against the
transition table when this module is imported, so a verb cannot make a change the table
forbids. The column values that several verbs write the same way ("queue a step",
"clear the lease", "add spend to the run") live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import ColumnElement, String, bindparam

from db.models import WorkflowRun, WorkflowStep
from db.states import (
    RunStatus,
    StepStatus,
    check_run_transition,
    check_step_transition,
)

StatusT = TypeVar("StatusT", StepStatus, RunStatus)


def status_is(column: Any, status: StepStatus | RunStatus) -> ColumnElement[bool]:
    """``column = '<status>'`` with the status written into the SQL, not bound: SQLite
    uses a partial index (``WHERE status = 'running'``) only for a query that states
    its condition with the same literal. Statuses are the enums' own values."""
    literal = bindparam(None, status.value, type_=String(), literal_execute=True)
    return cast(ColumnElement[bool], column == literal)


@dataclass(frozen=True)
class Move(Generic[StatusT]):
    """Rows in ``sources`` go to ``target``; every pair is allowed by the table of their
    state machine (steps' or runs'), checked when the move is made."""

    name: str
    sources: tuple[StatusT, ...]
    target: StatusT

    def __post_init__(self) -> None:
        check = check_step_transition if self._is_step() else check_run_transition
        for source in self.sources:
            check(source, self.target)  # type: ignore[arg-type]

    def guard(self) -> ColumnElement[bool]:
        """The ``WHERE status IN (...)`` of this move."""
        column = WorkflowStep.status if self._is_step() else WorkflowRun.status
        if len(self.sources) == 1:
            return status_is(column, self.sources[0])
        return column.in_(self.sources)

    def _is_step(self) -> bool:
        return isinstance(self.target, StepStatus)


StepMove = Move[StepStatus]
RunMove = Move[RunStatus]


S = StepStatus
#: A worker claims a queued attempt.
CLAIM = StepMove("claim", (S.QUEUED,), S.RUNNING)
#: The attempt's code returned.
SUCCEED = StepMove("succeed", (S.RUNNING,), S.SUCCEEDED)
#: The attempt's code raised, or its lease expired with no attempts left.
FAIL = StepMove("fail", (S.RUNNING,), S.FAILED)
#: The attempt failed (its own error, or a server's) and the step runs again later.
RETRY_LATER = StepMove("retry_later", (S.RUNNING,), S.RETRYING)
#: A running attempt stopped because its run was cancelled or failed.
STOP = StepMove("stop", (S.RUNNING,), S.CANCELLED)
#: The reaper queues again a step whose worker stopped heartbeating.
REQUEUE_EXPIRED = StepMove("requeue_expired", (S.RUNNING,), S.QUEUED)
#: A retrying step whose backoff is over.
REQUEUE_DUE = StepMove("requeue_due", (S.RETRYING,), S.QUEUED)
#: The last upstream of a pending step succeeded.
RELEASE = StepMove("release", (S.PENDING,), S.QUEUED)
#: A claim found the step's concurrency key at its limit: it waits, holding no message.
THROTTLE = StepMove("throttle", (S.QUEUED,), S.THROTTLED)
#: An attempt with its key stopped running: the oldest throttled step is queued again.
UNTHROTTLE = StepMove("unthrottle", (S.THROTTLED,), S.QUEUED)
#: The last element of a map step succeeded: the map step joins, without running.
JOIN_MAP = StepMove("join_map", (S.PENDING,), S.SUCCEEDED)
#: The attempt ended waiting (an approval, a signal, a sleep, its paused run's budget).
SUSPEND = StepMove("suspend", (S.RUNNING,), S.WAITING)
#: What a waiting step waited for came: it is queued again with attempt + 1.
WAKE = StepMove("wake", (S.WAITING,), S.QUEUED)
#: Steps that had not started (or were waiting) when their run ended.
CANCEL_NOT_STARTED = StepMove(
    "cancel_not_started",
    (S.PENDING, S.QUEUED, S.THROTTLED, S.RETRYING, S.WAITING),
    S.CANCELLED,
)
#: A run retry re-opens its failed and cancelled steps: ready ones queued, others pending.
REOPEN_READY = StepMove("reopen_ready", (S.FAILED, S.CANCELLED), S.QUEUED)
REOPEN_WAITING = StepMove("reopen_waiting", (S.CANCELLED,), S.PENDING)

R = RunStatus
#: The first claim of a run's step.
START_RUN = RunMove("start", (R.QUEUED,), R.RUNNING)
#: Its spend crossed a budget.
PAUSE_RUN = RunMove("pause", (R.RUNNING,), R.PAUSED)
#: A person approved a new budget.
RESUME_RUN = RunMove("resume", (R.PAUSED,), R.RUNNING)
#: The last step succeeded (a step already running when the run paused may be the last).
FINISH_RUN = RunMove("finish", (R.QUEUED, R.RUNNING, R.PAUSED), R.SUCCEEDED)
#: A step failed for good, or someone cancelled the run (or rejected its new budget).
FAIL_RUN = RunMove("fail", (R.QUEUED, R.RUNNING, R.PAUSED), R.FAILED)
CANCEL_RUN = RunMove("cancel", (R.QUEUED, R.RUNNING, R.PAUSED), R.CANCELLED)
#: ``cairn retry`` of a failed or cancelled run.
REOPEN_RUN = RunMove("reopen", (R.FAILED, R.CANCELLED), R.RUNNING)

STEP_MOVES = (
    CLAIM,
    SUCCEED,
    FAIL,
    RETRY_LATER,
    STOP,
    REQUEUE_EXPIRED,
    REQUEUE_DUE,
    RELEASE,
    THROTTLE,
    UNTHROTTLE,
    JOIN_MAP,
    SUSPEND,
    WAKE,
    CANCEL_NOT_STARTED,
    REOPEN_READY,
    REOPEN_WAITING,
)
RUN_MOVES = (START_RUN, PAUSE_RUN, RESUME_RUN, FINISH_RUN, FAIL_RUN, CANCEL_RUN, REOPEN_RUN)


def queued(now: datetime) -> dict[str, Any]:
    """The columns of a step put in the queue now (its message is sent after commit)."""
    return {
        "status": StepStatus.QUEUED,
        "queued_at": now,
        "dispatched_at": now,
        "next_attempt_at": None,
    }


def lease_cleared() -> dict[str, Any]:
    """The columns of a step whose attempt no longer holds a lease."""
    return {"lease_owner": None, "lease_expires_at": None}
