"""Priority per run: every step of the run carries it (its messages too), over the
definition's; a bad one is refused naming the field."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import WorkflowStep
from db.session import transaction
from tests.support.stack import Stack
from worker.client import Client
from worker.errors import DefinitionError

SPEC = {
    "name": "prio",
    "steps": [
        {"key": "a", "task": "t.increment", "priority": 2},
        {"key": "b", "task": "t.increment", "after": ["a"]},
    ],
}


def priorities(client: Client, run_id: object) -> dict[str, int]:
    with transaction(client.runtime.engine) as session:
        rows = session.execute(
            select(WorkflowStep.key, WorkflowStep.priority).where(WorkflowStep.run_id == run_id)
        ).all()
    return dict(rows)  # type: ignore[arg-type]


def test_a_runs_priority_replaces_the_definitions(stack: Stack, client: Client) -> None:
    stack.start_worker(concurrency=1)
    default = client.start_run(spec=SPEC, inputs={"x": 1})
    urgent = client.start_run(spec=SPEC, inputs={"x": 1}, priority=9)
    assert priorities(client, default) == {"a": 2, "b": 5}
    assert priorities(client, urgent) == {"a": 9, "b": 9}
    assert client.wait(urgent, timeout=30).status == "succeeded"
    assert client.wait(default, timeout=30).status == "succeeded"


@pytest.mark.parametrize("bad", [10, -1, "9", True])
def test_a_bad_priority_is_refused(client: Client, bad: object) -> None:
    with pytest.raises(DefinitionError) as caught:
        client.start_run(spec=SPEC, priority=bad)  # type: ignore[arg-type]
    assert caught.value.field == "priority"
