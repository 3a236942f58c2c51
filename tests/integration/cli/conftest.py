"""Fixtures of the command-line tests: settings on the test Redis index, and a worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import servers
from tests.support.stack import Stack
from worker.settings import Settings


@pytest.fixture
def cli_settings(settings: Settings) -> Settings:
    servers.redis_client().flushdb()
    return settings.model_copy(update={"broker_url": servers.REDIS_URL})


@pytest.fixture
def cli_stack(cli_settings: Settings, tmp_path: Path) -> Stack:
    stack = Stack(cli_settings, tmp_path)
    stack.start_worker()
    yield stack  # type: ignore[misc]
    stack.stop()
