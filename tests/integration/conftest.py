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
