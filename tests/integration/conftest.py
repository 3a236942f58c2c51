"""Fixtures of the integration tests: a real stack per test.

A clean database (SQLite or PostgreSQL), a clean Redis index, and worker processes the
test starts, stopped by pid afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.support.steps  # noqa: F401  (registers the t.* steps in this process too)
from tests.support import servers
from tests.support.stack import Stack
from worker.app import make_celery
from worker.client import Client
from worker.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _no_stray_consumers() -> None:
    """Refuse to run while a worker (say, of a killed earlier run) consumes the test Redis
    index: it would take this run's messages and drop them."""
    app = make_celery(Settings(_env_file=None, broker_url=servers.REDIS_URL))  # type: ignore[call-arg]
    try:
        replies = app.control.ping(timeout=1.0)
    finally:
        app.close()
    if replies:
        names = sorted(name for reply in replies for name in reply)
        pytest.fail(
            f"workers {names} already consume {servers.REDIS_URL}; stop them first "
            "(pkill -f 'celery -A tasks.celery_app')",
            pytrace=False,
        )


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    """The test database plus the dedicated Redis index; Redis emptied first."""
    servers.redis_client().flushdb()
    return settings.model_copy(update={"broker_url": servers.REDIS_URL})


@pytest.fixture
def stack(stack_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """Start workers and beats with ``stack.start_worker()``; all are stopped afterwards."""
    logs = tmp_path / "logs"
    logs.mkdir()
    s = Stack(stack_settings, logs)
    yield s
    s.stop()
    servers.redis_client().flushdb()


@pytest.fixture
def client(stack_settings: Settings) -> Iterator[Client]:
    """A client of the test stack, knowing the test step names."""
    with Client(stack_settings) as c:
        yield c


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    """Where test steps write one line per execution."""
    path = tmp_path / "trace"
    path.mkdir()
    return path
