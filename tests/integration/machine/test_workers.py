"""The component registry follows real worker processes: running, stopped, error."""

from __future__ import annotations

import time

from sqlalchemy import select

from db.models import Worker
from db.session import transaction
from tests.support.stack import Proc, Stack
from worker import __version__
from worker.client import Client
from worker.settings import Settings


def worker_row(client: Client, proc: Proc) -> Worker | None:
    with transaction(client.runtime.engine) as session:
        return session.scalar(select(Worker).where(Worker.name == proc.name))


def wait_status(client: Client, proc: Proc, status: str, timeout: float) -> Worker:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = worker_row(client, proc)
        if row is not None and row.status == status:
            return row
        time.sleep(0.1)
    raise AssertionError(f"{proc.name} never became {status}: {worker_row(client, proc)}")


def test_registry_shows_running_then_stopped_then_error(stack: Stack, client: Client) -> None:
    clean = stack.start_worker()
    row = wait_status(client, clean, "running", timeout=10)
    assert row.queues == ["cairn"]
    assert "t.loop" in row.step_names
    assert row.version == __version__
    assert row.heartbeat_at is not None

    clean.stop()  # SIGTERM: warm shutdown
    row = wait_status(client, clean, "stopped", timeout=10)
    assert row.stopped_at is not None

    crashed = stack.start_worker()
    wait_status(client, crashed, "running", timeout=10)
    stack.start_worker()  # beat only sends the reaper; a live worker runs it
    stack.start_beat()
    crashed.kill()
    wait_status(client, crashed, "error", timeout=4 * client.settings.lease_s + 5)


def test_clients_without_step_code_validate_against_running_workers(
    stack: Stack, stack_settings: Settings
) -> None:
    import pytest

    from worker.errors import DefinitionError
    from worker.registry import StepRegistry

    with Client(stack_settings, steps=StepRegistry()) as bare:
        assert bare.registered_step_names() is None  # nobody knows any step yet: no check
        proc = stack.start_worker()
        wait_status(bare, proc, "running", timeout=10)
        names = bare.registered_step_names()
        assert names is not None
        assert "t.increment" in names
        assert [w.name for w in bare.list_workers()] == [proc.name]
        with pytest.raises(DefinitionError, match=r"steps\[0\].task"):
            bare.start_run(spec={"name": "typo", "steps": [{"key": "a", "task": "t.incremnet"}]})
        run_id = bare.start_run(
            spec={"name": "ok", "steps": [{"key": "a", "task": "t.increment"}]}, inputs={"x": 1}
        )
        assert bare.wait(run_id, timeout=30).status == "succeeded"


def test_a_step_of_a_worker_started_after_the_names_were_read_is_known_at_once(
    stack: Stack, stack_settings: Settings
) -> None:
    """Clients keep the running workers' step names a few seconds; a start naming one
    they lack reads them again before refusing it."""
    import pytest

    from worker.errors import UnregisteredStep
    from worker.registry import StepRegistry
    from worker.workers import register_worker, stop_worker

    proc = stack.start_worker()
    with Client(stack_settings, steps=StepRegistry()) as bare:
        wait_status(bare, proc, "running", timeout=10)
        one = bare.start_run(
            spec={"name": "one", "steps": [{"key": "a", "task": "t.increment"}]}, inputs={"x": 1}
        )
        assert "t.later" not in (bare.registered_step_names() or ())  # kept from that start
        # A worker that has "t.later" registers now (its row is what a start reads).
        register_worker(bare.runtime.engine, "later@testhost", ["elsewhere"], ["t.later"])
        try:
            spec = {"name": "later", "steps": [{"key": "a", "task": "t.later", "queue": "x"}]}
            assert bare.start_run(spec=spec) != one
            assert "t.later" in (bare.registered_step_names() or ())
            with pytest.raises(UnregisteredStep, match=r"steps\[0\].task"):
                bare.start_run(spec={"name": "typo", "steps": [{"key": "a", "task": "t.nope"}]})
        finally:
            stop_worker(bare.runtime.engine, "later@testhost")
        assert bare.wait(one, timeout=30).status == "succeeded"
