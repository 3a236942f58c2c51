"""Artifacts through real workflow steps, on the local folder and on a real S3 server."""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Artifact, WorkflowRun, WorkflowStep
from db.session import transaction
from tests.support import s3
from tests.support.queries import count
from tests.support.stack import Stack
from tests.support.steps import _Zeros, trace_lines
from worker import blobs
from worker.artifacts import ArtifactStore
from worker.client import Client
from worker.errors import ArtifactIntegrityError
from worker.settings import Settings


@pytest.fixture
def art_client(art_settings: Settings) -> Iterator[Client]:
    with Client(art_settings) as c:
        yield c


@pytest.fixture
def art_stack(art_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    logs = tmp_path / "art-logs"
    logs.mkdir()
    stack = Stack(art_settings, logs)
    yield stack
    stack.stop()


PAIR = {
    "name": "artifacts",
    "steps": [
        {"key": "make", "task": "t.artifact"},
        {"key": "read", "task": "t.read_artifact", "after": ["make"]},
    ],
}


def test_put_get_round_trip_through_steps(
    art_stack: Stack, art_client: Client, store: ArtifactStore
) -> None:
    art_stack.start_worker()
    run_id = art_client.start_run(spec=PAIR, inputs={"name": "notes/report.txt", "text": "héllo"})
    view = art_client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.step("read").output == {"text": "héllo"}
    (row,) = art_client.list_artifacts(run_id)
    data = "héllo".encode()
    assert (row.name, row.step_key, row.attempt) == ("notes/report.txt", "make", 1)
    assert (row.size, row.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert row.key.endswith(f"/{run_id}/make/1/notes/report.txt")
    assert store.exists(row.key)
    assert art_client.download(run_id, "notes/report.txt") == data


def test_a_200_mb_artifact_streams_in_bounded_memory(art_stack: Stack, art_client: Client) -> None:
    art_stack.start_worker(concurrency=1)
    size = 200 * 1024 * 1024
    spec = {"name": "big", "steps": [{"key": "make", "task": "t.artifact"}]}
    run_id = art_client.start_run(spec=spec, inputs={"name": "big.bin", "size": size})
    view = art_client.wait(run_id, timeout=180)
    assert view.status == "succeeded", view.error
    assert view.step("make").output["hwm_growth_kb"] < 64 * 1024  # type: ignore[index]
    digest, source = hashlib.sha256(), _Zeros(size)
    while chunk := source.read(8 * 1024 * 1024):
        digest.update(chunk)
    (row,) = art_client.list_artifacts(run_id)
    assert (row.size, row.sha256) == (size, digest.hexdigest())


def test_a_tampered_object_is_detected(
    art_stack: Stack, art_client: Client, store: ArtifactStore
) -> None:
    art_stack.start_worker()
    spec = {"name": "one", "steps": [{"key": "make", "task": "t.artifact"}]}
    run_id = art_client.start_run(spec=spec, inputs={"text": "original"})
    assert art_client.wait(run_id, timeout=60).status == "succeeded"
    (row,) = art_client.list_artifacts(run_id)
    store.put(row.key, b"tampered")  # someone rewrote the object behind cairn's back
    with pytest.raises(ArtifactIntegrityError, match=row.key):
        art_client.download(run_id, "out.txt")


def test_traversal_and_control_names_are_refused_and_nothing_is_written(
    art_stack: Stack, art_client: Client, store: ArtifactStore
) -> None:
    art_stack.start_worker()
    spec = {
        "name": "evil",
        "steps": [{"key": "make", "task": "t.artifact", "retry": {"max_attempts": 3}}],
    }
    for name in ("../escape.txt", "/etc/passwd", "a/../../b", "bell\x07.txt", "tab\tname"):
        run_id = art_client.start_run(spec=spec, inputs={"name": name, "text": "x"})
        view = art_client.wait(run_id, timeout=60)
        assert view.status == "failed"
        assert view.step("make").attempt == 1  # not retried: no retry can fix a name
        assert view.error is not None
        assert view.error["type"] == "InvalidArtifactName"
    assert count(art_client.runtime.engine, Artifact) == 0
    assert store.list_objects() == []


def test_an_output_over_the_inline_limit_goes_to_the_store(
    art_stack: Stack, art_client: Client, store: ArtifactStore
) -> None:
    art_stack.start_worker()
    spec = {
        "name": "large",
        "steps": [
            {"key": "big", "task": "t.big_output"},
            {"key": "small", "task": "t.measure", "after": ["big"]},
        ],
    }
    run_id = art_client.start_run(spec=spec, inputs={"n": 50_000})
    view = art_client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.step("small").output == {"length": 50_000}  # passed on transparently
    assert view.step("big").output == {"blob": "x" * 50_000, "n": 50_000}
    with transaction(art_client.runtime.engine) as session:
        row = session.execute(
            select(
                WorkflowStep.output, WorkflowStep.output_blob_key, WorkflowStep.output_sha256
            ).where(WorkflowStep.run_id == run_id, WorkflowStep.key == "big")
        ).one()
    assert row.output is None
    assert row.output_blob_key is not None
    assert store.exists(row.output_blob_key)
    store.put(row.output_blob_key, b'{"blob": "forged"}')
    with pytest.raises(ArtifactIntegrityError):
        art_client.get_run(run_id)


def test_a_crash_between_upload_and_commit_leaves_an_orphan_that_retention_removes(
    art_stack: Stack, art_client: Client, store: ArtifactStore, trace_dir: Path
) -> None:
    from worker.maintenance import run_retention

    art_stack.start_worker()
    art_stack.start_beat()
    spec = {"name": "dies", "steps": [{"key": "s", "task": "t.put_then_die"}]}
    run_id = art_client.start_run(spec=spec, inputs={"trace_dir": str(trace_dir)})
    view = art_client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.step("s").attempt == 2
    assert trace_lines(trace_dir) == ["put_then_die 1", "put_then_die 2"]
    assert count(art_client.runtime.engine, Artifact) == 0
    orphans = [k for k, _ in store.list_objects() if k.endswith("/s/1/orphan.bin")]
    assert len(orphans) == 1

    runtime = art_client.runtime
    kept = run_retention(runtime)  # inside the grace period: nothing goes
    assert kept == (0, 0)
    assert store.exists(orphans[0])
    runtime.settings = runtime.settings.model_copy(update={"orphan_grace_s": 0})
    time.sleep(1)
    assert run_retention(runtime) == (0, 1)
    assert not store.exists(orphans[0])


def test_retention_deletes_artifacts_of_old_runs_and_says_so(
    art_stack: Stack, art_client: Client, store: ArtifactStore
) -> None:
    from worker.maintenance import run_retention

    art_stack.start_worker()
    spec = {"name": "old", "steps": [{"key": "make", "task": "t.artifact"}]}
    run_id = art_client.start_run(spec=spec, inputs={"text": "old news"})
    assert art_client.wait(run_id, timeout=60).status == "succeeded"
    (row,) = art_client.list_artifacts(run_id)
    runtime = art_client.runtime
    runtime.settings = runtime.settings.model_copy(update={"artifact_retention_days": 1e-6})
    time.sleep(0.2)
    assert run_retention(runtime) == (1, 0)
    assert not store.exists(row.key)
    (after,) = art_client.list_artifacts(run_id)
    assert after.deleted_at is not None
    assert "expire_artifacts" in [e.kind for e in art_client.events(run_id)]


def test_presigned_url_works_until_it_expires(
    art_stack: Stack, art_client: Client, store_backend: str
) -> None:
    if store_backend != "s3":
        with pytest.raises(Exception, match="presigned URLs need the s3 artifact backend"):
            art_client.runtime.store.presigned_url("x", 10)
        return
    art_stack.start_worker()
    spec = {"name": "shared", "steps": [{"key": "make", "task": "t.artifact"}]}
    run_id = art_client.start_run(spec=spec, inputs={"text": "share me"})
    assert art_client.wait(run_id, timeout=60).status == "succeeded"
    url = art_client.presigned_url(run_id, "out.txt", expires_s=60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"share me"
    short = art_client.presigned_url(run_id, "out.txt", expires_s=1)
    time.sleep(2.5)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(short, timeout=10)
    info.value.close()
    assert info.value.code == 403


def test_s3_down_mid_step_releases_the_attempt_unspent_then_succeeds(
    art_stack: Stack,
    art_client: Client,
    store_backend: str,
    store: ArtifactStore,
    trace_dir: Path,
    request: pytest.FixtureRequest,
) -> None:
    """S3 stopped mid-step, past CAIRN_SERVER_RETRY_S: the attempt is released (not the
    step's fault, no attempt spent, the server named, no secret), and the run succeeds
    under the default one-attempt policy once S3 is back."""
    if store_backend != "s3":
        return  # the local folder has no server to stop
    server: s3.SeaweedFS = request.getfixturevalue("seaweedfs")
    art_stack.settings = art_stack.settings.model_copy(update={"server_retry_s": 1.0})
    art_stack.start_worker()
    go = trace_dir / "go"
    spec = {"name": "outage", "steps": [{"key": "make", "task": "t.artifact"}]}
    run_id = art_client.start_run(
        spec=spec, inputs={"text": "survives", "wait_for": str(go), "trace_dir": str(trace_dir)}
    )
    deadline = time.monotonic() + 30
    while "artifact start 1" not in trace_lines(trace_dir):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.stop()
    try:
        go.touch()
        deadline = time.monotonic() + 60
        while not any(e.kind == "release_step" for e in art_client.events(run_id)):
            assert time.monotonic() < deadline, "the attempt was never released"
            time.sleep(0.2)
        released = next(e for e in art_client.events(run_id) if e.kind == "release_step")
        assert released.data is not None
        error = released.data["error"]
        assert error["type"] == "ArtifactStoreUnavailable"
        assert error["server"] == "the artifact store"
        assert server.endpoint in error["message"]
        assert s3.SECRET_KEY not in str(released.data)
    finally:
        server.restart()
    view = art_client.wait(run_id, timeout=90)
    assert view.status == "succeeded", view.error
    assert view.step("make").max_attempts == 1
    assert view.step("make").attempt >= 2
    assert not any(e.kind == "fail_step" for e in art_client.events(run_id))
    for row in art_client.list_artifacts(run_id):
        assert store.exists(row.key)  # no row points at a missing object


def test_a_checkpoint_state_over_the_inline_limit_resumes_from_the_store(
    art_stack: Stack, art_client: Client, store: ArtifactStore
) -> None:
    from db.models import Checkpoint

    art_stack.start_worker()
    spec = {
        "name": "bigstate",
        "steps": [
            {
                "key": "s",
                "task": "t.big_checkpoint",
                "retry": {"max_attempts": 2, "backoff_base_s": 0.1},
            }
        ],
    }
    run_id = art_client.start_run(spec=spec, inputs={"n": 20_000})
    view = art_client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.step("s").output == {"resumed_length": 20_000}
    with transaction(art_client.runtime.engine) as session:
        row = session.execute(
            select(Checkpoint.state, Checkpoint.blob_key, Checkpoint.blob_size).where(
                Checkpoint.run_id == run_id
            )
        ).one()
    assert row.state is None
    assert row.blob_size is not None
    assert row.blob_size > 20_000
    assert store.exists(row.blob_key)


def test_a_stored_output_of_a_last_step_is_the_runs_output_by_its_marker(
    art_stack: Stack, art_client: Client, store: ArtifactStore
) -> None:
    art_stack.start_worker()
    spec = {"name": "large-last", "steps": [{"key": "big", "task": "t.big_output"}]}
    run_id = art_client.start_run(spec=spec, inputs={"n": 50_000})
    view = art_client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    with transaction(art_client.runtime.engine) as session:
        key, sha = session.execute(
            select(WorkflowStep.output_blob_key, WorkflowStep.output_sha256).where(
                WorkflowStep.run_id == run_id
            )
        ).one()
        stored = session.scalar(select(WorkflowRun.outputs).where(WorkflowRun.id == run_id))
    assert key is not None
    assert store.exists(key)
    assert stored == {"big": blobs.marker(key, sha)}
