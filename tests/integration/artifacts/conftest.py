"""Artifact fixtures: one SeaweedFS per session; each test on the local folder and on S3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support import s3
from worker.artifacts import ArtifactStore, LocalStore, S3Store, make_store
from worker.settings import Settings


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3.SeaweedFS]:
    """A real S3-compatible server on loopback, with the bucket ``s3.BUCKET`` made through
    the store (as ``cairn artifacts init`` does); stopped by pid at the end. ``endpoint``,
    ``access_key`` and ``secret_key`` say how to reach it; ``settings()`` builds Settings."""
    server = s3.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        S3Store(server.settings()).ensure_bucket()
        yield server
    finally:
        server.stop()


@pytest.fixture
def ns() -> str:
    """A key prefix of this test alone: S3 tests share one bucket."""
    return f"contract-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A local folder store in the test's own folder."""
    return LocalStore(tmp_path / "store")


@pytest.fixture
def s3_store(seaweedfs: s3.SeaweedFS) -> S3Store:
    """An S3 store on the session's SeaweedFS: real HTTP, path-style, real credentials."""
    return S3Store(seaweedfs.settings())


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest) -> ArtifactStore:
    """The contract's subject: each test runs on the local folder and on S3."""
    store: ArtifactStore = request.getfixturevalue(f"{request.param}_store")
    return store


# --- fixtures of the workflow tests (test_artifacts.py): a real stack per test -----------


@pytest.fixture(params=["local", "s3"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Run the test on the local folder and on the S3 server."""
    return str(request.param)


@pytest.fixture
def art_settings(
    stack_settings: Settings, store_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Settings:
    """The stack's settings with the artifact backend of the test and a small inline limit."""
    update: dict[str, object] = {"inline_limit_bytes": 4096, "artifact_backend": store_backend}
    if store_backend == "s3":
        server: s3.SeaweedFS = request.getfixturevalue("seaweedfs")
        bucket = f"t{abs(hash(tmp_path.name)) % 10**9}"
        update |= {
            "s3_endpoint_url": server.endpoint,
            "s3_bucket": bucket,
            "s3_access_key": SecretStr(s3.ACCESS_KEY),
            "s3_secret_key": SecretStr(s3.SECRET_KEY),
            "s3_use_ssl": False,
        }
    settings = stack_settings.model_copy(update=update)
    store = make_store(settings)
    if isinstance(store, S3Store):
        store.ensure_bucket()
    return settings


@pytest.fixture
def store(art_settings: Settings) -> ArtifactStore:
    """The store the test's workers write to."""
    return make_store(art_settings)


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Artifacts are storage-bound, not database-bound: PostgreSQL here; the embedded
    default (SQLite + local folder) is covered by the ``cairn dev --demo`` test."""
    return str(request.param)
