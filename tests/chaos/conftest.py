"""Fixtures of the chaos suite: its own PostgreSQL database and Redis server, real
``cairn worker`` and ``cairn beat`` processes, everything stopped by pid at the end.

The small sizes run in the normal suite; ``CAIRN_CHAOS_SIZE=full`` (``scripts/chaos``)
runs the sizes of the issue. A missing server fails the case, it never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

import tests.chaos.steps  # noqa: F401  (registers chaos.units for the client's checks)
from db import migrate
from tests.chaos import harness
from tests.support import databases, servers
from tests.support.s3 import free_ports
from tests.support.stack import Stack
from worker.client import Client
from worker.settings import Settings

#: The suite's own database: created at the start of the session, dropped at its end
#: (one per pytest-xdist process: ``cairn_chaos_gw1``).
CHAOS_DB = "cairn_chaos" + (f"_{servers.XDIST_WORKER}" if servers.XDIST_WORKER else "")
STEP_MODULES = "tests.support.steps,tests.chaos.steps"
#: Short leases, so that recovery shows within seconds.
LEASE_S = 4.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every case of this folder carries the ``chaos`` marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """Repeat the figures of every case at the end of the run."""
    if harness.SUMMARIES:
        terminalreporter.section("chaos summary")
        for line in harness.SUMMARIES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def chaos_db_url() -> Iterator[str]:
    """``cairn_chaos``, migrated to head; dropped at the end of the session."""
    url = servers.recreate_pg_database(CHAOS_DB)
    migrate.upgrade(databases.make_settings(url, Path("/nonexistent")))
    yield url
    servers.drop_pg_database(CHAOS_DB)


@pytest.fixture
def chaos_redis(tmp_path: Path) -> Iterator[harness.RedisServer]:
    """A Redis server of this case alone, on a free loopback port."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = harness.RedisServer(harness.redis_binary(), free_ports(1)[0], folder)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chaos_settings(chaos_db_url: str, chaos_redis: harness.RedisServer, tmp_path: Path) -> Settings:
    """Settings of the workers: the emptied chaos database, the case's Redis, lease 4 s."""
    settings = databases.make_settings(
        chaos_db_url,
        tmp_path,
        broker_url=chaos_redis.url,
        lease_s=LEASE_S,
        redispatch_after_s=None,
    )
    databases.truncate_postgres(settings)
    return settings


def observer_settings(settings: Settings) -> Settings:
    """The same settings for the test's own connections, named so no fault cuts them."""
    url = make_url(settings.database_url).update_query_dict({"application_name": harness.OBSERVER})
    return settings.model_copy(update={"database_url": url.render_as_string(hide_password=False)})


@pytest.fixture
def chaos_stack(chaos_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """Start ``cairn worker``/``cairn beat`` with it; all are stopped by pid afterwards."""
    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(chaos_settings, logs, step_modules=STEP_MODULES)
    yield stack
    stack.stop()


@pytest.fixture
def chaos_client(chaos_settings: Settings) -> Iterator[Client]:
    """A client of the chaos stack, on connections the faults spare."""
    with Client(observer_settings(chaos_settings)) as client:
        yield client


@pytest.fixture
def observer(chaos_client: Client) -> Engine:
    """The engine the case reads its figures through."""
    return chaos_client.runtime.engine
