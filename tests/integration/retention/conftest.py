"""Retention fixtures: one SeaweedFS per session for the S3 case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import s3
from tests.support.stack import Stack
from worker.client import Client
from worker.settings import Settings


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3.SeaweedFS]:
    """A real S3-compatible server on loopback, stopped by pid at the end."""
    server = s3.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_inline(stack_settings: Settings) -> Settings:
    """Large outputs and states go to the store from 4 KiB on."""
    return stack_settings.model_copy(update={"inline_limit_bytes": 4096})


@pytest.fixture
def ret_stack(small_inline: Settings, tmp_path: Path) -> Iterator[Stack]:
    logs = tmp_path / "ret-logs"
    logs.mkdir()
    stack = Stack(small_inline, logs)
    yield stack
    stack.stop()


@pytest.fixture
def ret_client(small_inline: Settings) -> Iterator[Client]:
    with Client(small_inline) as c:
        yield c
