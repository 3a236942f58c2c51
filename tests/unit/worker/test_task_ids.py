"""Task ids name one attempt of one step, and read back to the step."""

from __future__ import annotations

import uuid

from worker.dispatch import parse_task_id, task_id


def test_a_task_id_reads_back_to_its_step_and_attempt() -> None:
    step = uuid.uuid4()
    assert parse_task_id(task_id(step, 3)) == (step, 3)


def test_other_task_ids_name_no_step() -> None:
    for other in ["", "celery-uuid", f"{uuid.uuid4()}", "not-a-uuid:2", f"{uuid.uuid4()}:x"]:
        assert parse_task_id(other) is None, other
