"""A run started over HTTP, executed by a real worker that writes to a real S3 server
(SeaweedFS), its artifact downloaded over HTTP and by a presigned URL: right sha256."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from db import migrate
from tests.conftest import PG_TEST_DB
from tests.integration.api.test_endpoints import MAKES_FILE, start, wait_run
from tests.support import s3, servers
from worker.artifacts import S3Store
from worker.settings import Settings


@pytest.fixture(scope="module")
def api_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """PostgreSQL and a SeaweedFS of this module (overrides the package's fixture)."""
    folder = tmp_path_factory.mktemp("api-s3")
    (folder / "weed").mkdir()
    server = s3.start_seaweedfs(folder / "weed")
    database = f"{PG_TEST_DB}_api_s3"
    try:
        url = servers.recreate_pg_database(database)
        settings = server.settings(database_url=url, broker_url=servers.REDIS_URL, lease_s=3.0)
        migrate.upgrade(settings)
        S3Store(settings).ensure_bucket()
        servers.redis_client().flushdb()
        yield settings
        servers.drop_pg_database(database)
    finally:
        server.stop()


def test_artifact_over_http_and_presigned_url(http: httpx.Client) -> None:
    size = 3 * 1024 * 1024 + 17  # several chunks of the stream, and a multipart upload
    run_id = start(http, spec=MAKES_FILE, inputs={"name": "report.bin", "size": size})
    assert wait_run(http, run_id)["status"] == "succeeded"
    [listed] = http.get(f"/v1/runs/{run_id}/artifacts").json()
    assert (listed["name"], listed["size"]) == ("report.bin", size)
    expected = listed["sha256"]  # computed by the worker's upload, from the bytes it sent
    with http.stream("GET", f"/v1/runs/{run_id}/artifacts/report.bin/content") as response:
        assert response.status_code == 200, response.read()
        assert response.headers["x-content-sha256"] == expected
        assert int(response.headers["content-length"]) == size
        streamed = b"".join(response.iter_bytes())
    assert len(streamed) == size
    assert hashlib.sha256(streamed).hexdigest() == expected
    presigned = http.get(f"/v1/runs/{run_id}/artifacts/report.bin/url?expires_s=60").json()
    assert presigned["expires_s"] == 60
    fetched = httpx.get(presigned["url"], timeout=30)  # no key: the URL is the permission
    assert fetched.status_code == 200
    assert fetched.content == streamed
