"""The artifact store away mid-run: SeaweedFS stopped while steps put an artifact per
unit, then started again on the same ports and data. Under the DEFAULT retry policy (one
attempt) every run succeeds once it is back, each effect is committed once, and every
artifact row points at an object of the row's size and sha256."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import Engine, text

from tests.chaos import harness
from tests.chaos.conftest import STEP_MODULES
from tests.chaos.steps import unit_bytes
from tests.support import s3
from tests.support.stack import Stack
from worker.artifacts import S3Store
from worker.client import Client
from worker.settings import Settings


@dataclass(frozen=True)
class Size:
    runs: int
    units: int
    pause_s: float
    outage_s: float


SIZE = Size(20, 10, 0.2, 15.0) if harness.FULL else Size(8, 6, 0.2, 6.0)


@pytest.fixture
def seaweedfs(tmp_path: Path) -> Iterator[s3.SeaweedFS]:
    """A SeaweedFS of this case, with the bucket made; stopped by pid at the end."""
    folder = tmp_path / "seaweedfs"
    folder.mkdir()
    server = s3.start_seaweedfs(folder)
    try:
        S3Store(server.settings()).ensure_bucket()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_stack(
    chaos_settings: Settings, seaweedfs: s3.SeaweedFS, tmp_path: Path
) -> Iterator[tuple[Stack, Settings]]:
    """The chaos stack with artifacts on SeaweedFS, every other setting at its default."""
    store = seaweedfs.settings()
    settings = chaos_settings.model_copy(
        update={
            name: getattr(store, name)
            for name in (
                "artifact_backend",
                "s3_endpoint_url",
                "s3_bucket",
                "s3_access_key",
                "s3_secret_key",
                "s3_use_ssl",
                "s3_path_style",
            )
        }
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(settings, logs, step_modules=STEP_MODULES)
    yield stack, settings
    stack.stop()


def _artifact_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM artifacts")) or 0)


@pytest.mark.timeout(600 if harness.FULL else 150)
def test_runs_wait_out_an_s3_outage_under_the_default_policy(
    s3_stack: tuple[Stack, Settings],
    seaweedfs: s3.SeaweedFS,
    chaos_client: Client,
    observer: Engine,
) -> None:
    stack, settings = s3_stack
    stack.start_cairn_worker(concurrency=2)
    stack.start_cairn_worker(concurrency=2)
    stack.start_cairn_beat()
    spec = harness.chain(1)  # no retry policy: the default, one attempt
    inputs = {"units": SIZE.units, "pause_s": SIZE.pause_s, "artifacts": True}
    for _ in range(SIZE.runs):
        chaos_client.start_run(spec=spec, inputs=inputs)

    deadline = time.monotonic() + 60
    while _artifact_rows(observer) < 2:  # mid-run: objects stored and rows committed
        assert time.monotonic() < deadline, "no artifact committed within 60 s"
        time.sleep(0.1)
    seaweedfs.stop()
    ended_at_stop = sum(harness.run_statuses(observer).get(s, 0) for s in harness.ENDED)
    time.sleep(SIZE.outage_s)  # the outage itself, not a wait for readiness
    during = harness.run_statuses(observer)
    seaweedfs.restart()  # same ports, same data folder; probed until it answers
    harness.wait_runs_ended(observer, SIZE.runs, timeout=180 if harness.FULL else 90)

    t = harness.tally(observer, SIZE.runs, SIZE.units, steps_per_run=1, artifacts=True)
    missing_objects, bad_objects = _check_objects(observer, seaweedfs, settings.s3_bucket)
    harness.report(
        t.line("s3 outage")
        + f" | outage {SIZE.outage_s:.0f} s with {SIZE.runs - ended_at_stop} runs in flight; "
        f"statuses at its end {during} | objects missing {missing_objects} "
        f"wrong {bad_objects}"
    )
    assert ended_at_stop < SIZE.runs, "the outage must begin while runs are in flight"
    assert during.get("failed", 0) == 0, "a run failed during the outage"
    harness.assert_nothing_lost_or_doubled(t, SIZE.runs, steps_per_run=1)
    assert t.fail_step_events == 0, "the outage was recorded as the step's failure"
    assert t.spent_attempts == 0, "the outage spent a step's own attempt"
    assert missing_objects == 0, "artifact rows point at missing objects"
    assert bad_objects == 0, "objects differ from their rows' size or sha256"
    with observer.connect() as conn:
        policies = conn.execute(text("SELECT DISTINCT max_attempts FROM workflow_steps")).all()
    assert [tuple(p) for p in policies] == [(1,)], "the case must run the default policy"


def _check_objects(engine: Engine, server: s3.SeaweedFS, bucket: str) -> tuple[int, int]:
    """HEAD and read every artifact row's object: (missing, differing) counts."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.run_id, s.key AS step_key, a.name, a.key, a.size, a.sha256 "
                "FROM artifacts a JOIN workflow_steps s ON s.id = a.step_id"
            )
        ).all()
    missing = bad = 0
    for row in rows:
        try:
            head = client.head_object(Bucket=bucket, Key=row.key)
        except ClientError:
            missing += 1
            continue
        body = client.get_object(Bucket=bucket, Key=row.key)["Body"].read()
        unit = int(row.name.removeprefix("unit-").removesuffix(".txt"))
        expected = unit_bytes(str(row.run_id), row.step_key, unit)
        if (
            head["ContentLength"] != row.size
            or hashlib.sha256(body).hexdigest() != row.sha256
            or body != expected
        ):
            bad += 1
    return missing, bad
