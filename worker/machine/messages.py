"""What a verb returns for the dispatcher: the steps it made ready, to send after commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.models import WorkflowStep


@dataclass(frozen=True, slots=True)
class StepMessage:
    """A step made ready by a verb: send ``execute_step(step_id, attempt)`` after commit."""

    step_id: uuid.UUID
    attempt: int
    run_id: uuid.UUID
    key: str
    task: str
    queue: str
    priority: int


@dataclass(frozen=True, slots=True)
class Taken:
    """A step's message that a worker took from the broker at ``at`` and has not
    acknowledged (``Dispatcher.stranded``): the reconciler's evidence of a lost one."""

    step_id: uuid.UUID
    attempt: int
    at: datetime


#: Columns a verb returns for every step it queues.
MESSAGE_COLUMNS = (
    WorkflowStep.id,
    WorkflowStep.attempt,
    WorkflowStep.run_id,
    WorkflowStep.key,
    WorkflowStep.task,
    WorkflowStep.queue,
    WorkflowStep.priority,
)


def to_messages(rows: Iterable[Any]) -> list[StepMessage]:
    """StepMessages from rows selected or returned with ``MESSAGE_COLUMNS`` first."""
    return [
        StepMessage(
            step_id=r[0], attempt=r[1], run_id=r[2], key=r[3], task=r[4], queue=r[5], priority=r[6]
        )
        for r in rows
    ]


@dataclass
class Released:
    """What a success set in motion: steps to send, and whether it finished the run."""

    messages: list[StepMessage] = field(default_factory=list)
    finished: bool = False

    def __iadd__(self, other: Released) -> Released:
        self.messages += other.messages
        self.finished |= other.finished
        return self
