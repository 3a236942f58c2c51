"""Fixtures of the HTTP API tests: a real ``cairn api`` (uvicorn) and a real worker per
module and backend, and API keys made per test for fresh tenants.

One server per module keeps the suite quick; tests stay apart by their tenants, which is
also what the API promises (a tenant sees only its own objects).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from db import migrate
from db.session import make_engine, run_transaction
from db.types import utcnow
from tests.conftest import PG_TEST_DB
from tests.support import databases, servers
from tests.support.stack import Stack
from worker.apikeys import create_key
from worker.devstack import free_port
from worker.settings import Settings

KeyMaker = Callable[..., str]
KEY_CACHE_S = 1.0


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A migrated database of the module's backend, private to the module, and Redis."""
    folder = tmp_path_factory.mktemp(f"api-{request.param}")
    database = f"{PG_TEST_DB}_api"
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'cairn.db'}"
    else:
        url = servers.recreate_pg_database(database)
    settings = databases.make_settings(url, folder, broker_url=servers.REDIS_URL)
    migrate.upgrade(settings)
    servers.redis_client().flushdb()
    yield settings
    if request.param == "postgresql":
        servers.drop_pg_database(database)


@pytest.fixture(scope="module")
def api_stack(api_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``cairn api`` and one ``cairn worker`` with the test steps; stopped by pid after."""
    logs = tmp_path_factory.mktemp("api-logs")
    stack = Stack(api_settings, logs)
    try:
        stack.start_cairn_worker(concurrency=2)
        yield stack
    finally:
        stack.stop()
        servers.redis_client().flushdb()


@pytest.fixture(scope="module")
def api_url(api_stack: Stack) -> str:
    """The base URL of the module's API server (stopped with the stack)."""
    port = free_port()
    # Keys are trusted for a second once checked: the revocation test waits that long.
    api_stack.start_api(port, env={"CAIRN_API_KEY_CACHE_S": str(KEY_CACHE_S)})
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def make_key(api_settings: Settings) -> Iterator[KeyMaker]:
    """``make_key(tenant=None)``: an API key of ``tenant`` (a fresh tenant by default)."""
    engine = make_engine(api_settings)

    def make(tenant: str | None = None, name: str = "test") -> str:
        tenant = tenant or f"t-{uuid.uuid4().hex[:10]}"
        _, token = run_transaction(engine, lambda s: create_key(s, tenant, name, utcnow()))
        return token

    yield make
    engine.dispose()


@pytest.fixture
def key(make_key: KeyMaker) -> str:
    """The API key of a fresh tenant (the one ``http`` sends)."""
    return make_key()


@pytest.fixture
def http(api_url: str, key: str) -> Iterator[httpx.Client]:
    """An HTTP client of a fresh tenant, its key in every request."""
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def api_log(api_stack: Stack) -> Callable[[], str]:
    """The text the API server has logged so far."""
    logs: Path = api_stack.log_dir
    return lambda: "".join(p.read_text(errors="replace") for p in logs.glob("api*.log"))
