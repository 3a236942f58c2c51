"""A fault of cairn's servers is never the step's: real worker processes, real servers
behind proxies that cut them, the DEFAULT retry policy (one attempt)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import Artifact, Checkpoint, CostRecord, Message, WorkflowStep
from tests.integration.faults.conftest import through
from tests.support import s3
from tests.support.proxy import Proxy
from tests.support.queries import event_kinds
from tests.support.stack import Stack
from worker.client import Client
from worker.settings import Settings

LOOP = {"name": "loop", "steps": [{"key": "work", "task": "t.loop"}]}


def _wait_event(engine: Engine, run_id: object, kind: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while kind not in event_kinds(engine, run_id):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, f"no {kind} event in {timeout} s"
        time.sleep(0.1)


def _rows(engine: Engine, model: type, run_id: object) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(select(func.count()).select_from(model).where(model.run_id == run_id))  # type: ignore[attr-defined]
            or 0
        )


def test_cut_database_connections_cost_no_attempt_and_record_once(
    stack_settings: Settings, pg_proxy: Proxy, client: Client, tmp_path: Path
) -> None:
    """Every connection of the worker cut again and again, commits whose reply is lost:
    the run succeeds at attempt 1 with each checkpoint, cost and message recorded once."""
    worker_settings = stack_settings.model_copy(
        update={"database_url": through(stack_settings, pg_proxy), "lease_s": 6.0}
    )
    (tmp_path / "logs").mkdir()
    stack = Stack(worker_settings, tmp_path / "logs")
    stop = threading.Event()

    def chaos() -> None:
        while not stop.wait(0.15):
            pg_proxy.cut()
            if not stop.wait(0.15):
                pg_proxy.drop_reply_to(b"COMMIT")

    try:
        stack.start_worker(concurrency=2)
        runs = [
            client.start_run(spec=LOOP, inputs={"iterations": 8, "pause_s": 0.1}) for _ in range(3)
        ]
        cutter = threading.Thread(target=chaos, daemon=True)
        cutter.start()
        try:
            views = [client.wait(run_id, timeout=90) for run_id in runs]
        finally:
            stop.set()
            cutter.join()
    finally:
        stack.stop()
    assert pg_proxy.cuts > 0
    assert pg_proxy.dropped_replies > 0
    engine = client.runtime.engine
    for view in views:
        assert view.status == "succeeded", view.error
        assert [s.attempt for s in view.steps] == [1], "no attempt was spent on a cut"
        kinds = event_kinds(engine, view.id)
        assert "fail_step" not in kinds
        assert "release_step" not in kinds
        with engine.connect() as conn:
            seqs = conn.scalars(
                select(Checkpoint.seq).where(Checkpoint.run_id == view.id).order_by(Checkpoint.seq)
            ).all()
        assert list(seqs) == list(range(1, 9))
        assert _rows(engine, CostRecord, view.id) == 8
        assert _rows(engine, Message, view.id) == 8


def test_an_artifact_store_outage_releases_the_attempt_unspent(
    s3_settings: Settings, s3_proxy: Proxy, seaweedfs: s3.SeaweedFS, tmp_path: Path
) -> None:
    """S3 away past CAIRN_SERVER_RETRY_S: the attempt is released, not failed; the step runs
    again when S3 is back and the run succeeds under the default one-attempt policy."""
    (tmp_path / "logs").mkdir()
    stack = Stack(s3_settings, tmp_path / "logs")
    spec = {"name": "put", "steps": [{"key": "put", "task": "t.artifact"}]}
    with Client(s3_settings) as client:
        try:
            stack.start_worker()
            stack.start_beat()
            s3_proxy.refuse(True)
            run_id = client.start_run(spec=spec, inputs={"text": "hello"})
            _wait_event(client.runtime.engine, run_id, "release_step")
            assert client.get_run(run_id).status == "running"
            s3_proxy.refuse(False)
            view = client.wait(run_id, timeout=60)
        finally:
            stack.stop()
        assert view.status == "succeeded", view.error
        engine = client.runtime.engine
        with Session(engine) as session:
            step = session.scalars(select(WorkflowStep).where(WorkflowStep.run_id == run_id)).one()
            rows = session.scalars(select(Artifact).where(Artifact.run_id == run_id)).all()
        assert step.max_attempts == 1
        assert step.server_releases >= 1
        assert step.attempt == step.server_releases + 1, "only released attempts came before"
        kinds = event_kinds(engine, run_id)
        assert "fail_step" not in kinds
        assert len(rows) == 1
        obj = boto3.client(
            "s3",
            endpoint_url=seaweedfs.endpoint,
            aws_access_key_id=s3.ACCESS_KEY,
            aws_secret_access_key=s3.SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        ).head_object(Bucket=s3_settings.s3_bucket, Key=rows[0].key)
        assert obj["ContentLength"] == rows[0].size == 5


def test_a_step_that_raises_still_fails_by_its_own_policy(
    stack_settings: Settings, pg_proxy: Proxy, client: Client, tmp_path: Path
) -> None:
    """The classification is not a blanket retry: the step's own error, with connections
    cut meanwhile, fails the run under the default policy."""
    worker_settings = stack_settings.model_copy(
        update={"database_url": through(stack_settings, pg_proxy)}
    )
    (tmp_path / "logs").mkdir()
    stack = Stack(worker_settings, tmp_path / "logs")
    spec = {"name": "boom", "steps": [{"key": "boom", "task": "t.flaky"}]}
    try:
        stack.start_worker()
        run_id = client.start_run(spec=spec, inputs={"fail_times": 1})
        pg_proxy.cut()
        view = client.wait(run_id, timeout=60)
    finally:
        stack.stop()
    assert view.status == "failed"
    assert view.steps[0].attempt == 1
    assert view.steps[0].error is not None
    assert view.steps[0].error["type"] != "DatabaseUnavailable"
    assert "fail_step" in event_kinds(client.runtime.engine, run_id)
