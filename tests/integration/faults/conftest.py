"""Fixtures of the server-fault tests: PostgreSQL and SeaweedFS behind cuttable proxies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from tests.support import s3
from tests.support.proxy import Proxy
from worker.artifacts import S3Store, make_store
from worker.settings import Settings


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Connections are cut on the wire: PostgreSQL, the server that has one."""
    return str(request.param)


@pytest.fixture
def pg_proxy(settings: Settings) -> Iterator[Proxy]:
    """A proxy in front of the test's PostgreSQL."""
    url = settings.db_url
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432)).start()
    yield proxy
    proxy.stop()


def through(settings: Settings, proxy: Proxy) -> str:
    """The settings' database URL, pointed at ``proxy``."""
    url = make_url(settings.database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3.SeaweedFS]:
    """A real S3-compatible server for the session."""
    server = s3.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_proxy(seaweedfs: s3.SeaweedFS) -> Iterator[Proxy]:
    """A proxy in front of the S3 endpoint: refuse() is an S3 outage."""
    url = make_url(seaweedfs.endpoint.replace("http://", "postgresql://", 1))
    proxy = Proxy((url.host or "127.0.0.1", url.port or 80)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def s3_settings(stack_settings: Settings, s3_proxy: Proxy, tmp_path: Path) -> Settings:
    """The stack's settings on S3 through the proxy, with a short server retry bound."""
    settings = stack_settings.model_copy(
        update={
            "artifact_backend": "s3",
            "s3_endpoint_url": f"http://127.0.0.1:{s3_proxy.port}",
            "s3_bucket": f"f{abs(hash(tmp_path.name)) % 10**9}",
            "s3_access_key": SecretStr(s3.ACCESS_KEY),
            "s3_secret_key": SecretStr(s3.SECRET_KEY),
            "s3_use_ssl": False,
            "server_retry_s": 1.0,
        }
    )
    store = make_store(settings)
    assert isinstance(store, S3Store)
    store.ensure_bucket()
    return settings
