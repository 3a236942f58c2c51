"""A real stack per test: clean database (SQLite or PostgreSQL), clean Redis index, real
worker processes started by the test and stopped by pid afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.support.steps  # noqa: F401  (registers the t.* steps in this process too)
from tests.support import servers
from tests.support.stack import Stack
from worker.client import Client
from worker.settings import Settings


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


def trace_lines(trace_dir: Path) -> list[str]:
    """Every line the steps wrote, in order."""
    path = trace_dir / "trace.log"
    return path.read_text().splitlines() if path.exists() else []
