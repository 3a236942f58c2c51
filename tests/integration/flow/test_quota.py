"""A tenant's quota of running steps holds across workers (sampled from the database);
steps past it wait throttled and all finish."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import RunEvent, WorkflowRun, WorkflowStep
from db.session import transaction
from db.states import StepStatus
from tests.support.stack import Stack
from worker.client import Client

NAP = {"name": "nap", "steps": [{"key": "nap", "task": "t.sleep"}]}


@pytest.mark.parametrize(
    "backend", ["postgresql"]
)  # the claim path is shared; PostgreSQL is where slots race
def test_a_tenant_quota_of_two_running_steps_holds(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    assert client.set_quota(2) == 2
    stack.start_worker(concurrency=3)
    stack.start_worker(concurrency=3)
    stack.start_beat()
    runs = [
        client.start_run(spec=NAP, inputs={"seconds": 0.3, "trace_dir": str(trace_dir)})
        for _ in range(10)
    ]
    most = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal most
        while not stop.is_set():
            with transaction(client.runtime.engine) as session:
                n = session.scalar(
                    select(func.count())
                    .select_from(WorkflowStep)
                    .join(WorkflowRun, WorkflowRun.id == WorkflowStep.run_id)
                    .where(WorkflowStep.status == StepStatus.RUNNING)
                )
            most = max(most, int(n or 0))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        views = [client.wait(r, timeout=90) for r in runs]
    finally:
        stop.set()
        sampler.join()
    assert [v.status for v in views] == ["succeeded"] * 10
    assert 1 <= most <= 2
    with transaction(client.runtime.engine) as session:
        throttled = session.scalar(
            select(func.count()).where(RunEvent.run_id.in_(runs), RunEvent.kind == "throttle")
        )
    assert throttled
    assert client.set_quota(None) is None
    assert client.quota() is None
