"""Retention on a real S3 server (SeaweedFS): the objects of a deleted run go with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.integration.retention.world import build_world, check_deleted_and_kept, start_live
from tests.support import s3
from tests.support.stack import Stack
from worker.artifacts import S3Store, make_store
from worker.client import Client
from worker.settings import Settings


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The S3 case is storage-bound: PostgreSQL only (the other tests run on both)."""
    return str(request.param)


@pytest.fixture
def s3_settings(small_inline: Settings, seaweedfs: s3.SeaweedFS, tmp_path: Path) -> Settings:
    settings = small_inline.model_copy(
        update={
            "artifact_backend": "s3",
            "s3_endpoint_url": seaweedfs.endpoint,
            "s3_bucket": f"ret{abs(hash(tmp_path.name)) % 10**9}",
            "s3_access_key": SecretStr(s3.ACCESS_KEY),
            "s3_secret_key": SecretStr(s3.SECRET_KEY),
            "s3_use_ssl": False,
        }
    )
    store = make_store(settings)
    assert isinstance(store, S3Store)
    store.ensure_bucket()
    return settings


@pytest.fixture
def s3_stack(s3_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    logs = tmp_path / "s3-logs"
    logs.mkdir()
    stack = Stack(s3_settings, logs)
    yield stack
    stack.stop()


@pytest.fixture
def s3_client(s3_settings: Settings) -> Iterator[Client]:
    with Client(s3_settings) as c:
        yield c


def test_purge_deletes_the_run_and_its_objects_in_s3_but_nothing_of_a_live_run(
    s3_stack: Stack, s3_client: Client, s3_settings: Settings
) -> None:
    from datetime import timedelta

    s3_stack.start_worker()
    world = build_world(s3_client)
    live_id = start_live(s3_client, s3_stack)
    try:
        check_deleted_and_kept(
            s3_client,
            make_store(s3_settings),
            world,
            live_id,
            lambda: s3_client.purge_runs(timedelta(milliseconds=1)) == 2 or pytest.fail("count"),
        )
    finally:
        s3_client.cancel(live_id)
