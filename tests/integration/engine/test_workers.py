"""The component registry follows real worker processes: running, stopped, error."""

from __future__ import annotations

import time

from sqlalchemy import select

from db.models import Worker
from db.session import transaction
from tests.support.stack import Proc, Stack
from worker import __version__
from worker.client import Client


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
