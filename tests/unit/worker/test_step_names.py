"""StepNames: the running workers' step names, kept a few seconds."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from db.states import WorkerStatus
from db.views import WorkerView
from worker.workers import StepNames


def _worker(status: WorkerStatus, *names: str) -> WorkerView:
    return WorkerView(
        name=f"w-{uuid.uuid4().hex[:6]}",
        hostname="h",
        pid=1,
        status=status,
        queues=["cairn"],
        step_names=list(names),
        version="0",
        heartbeat_at=datetime.now(UTC),
        stopped_at=None,
    )


def test_the_names_of_running_workers_are_kept_for_the_ttl() -> None:
    known = StepNames(ttl_s=60)
    assert known.cached() == (False, None)
    names = known.store(
        [_worker(WorkerStatus.RUNNING, "a", "b"), _worker(WorkerStatus.STOPPED, "c")]
    )
    assert names == frozenset({"a", "b"})
    assert known.cached() == (True, frozenset({"a", "b"}))
    known.forget()
    assert known.cached() == (False, None)


def test_names_go_stale_after_the_ttl() -> None:
    known = StepNames(ttl_s=0.01)
    known.store([_worker(WorkerStatus.RUNNING, "a")])
    time.sleep(0.02)
    assert known.cached() == (False, None)


def test_no_running_worker_is_not_kept_so_the_first_one_is_seen_at_once() -> None:
    known = StepNames(ttl_s=60)
    assert known.store([_worker(WorkerStatus.ERROR, "a")]) is None
    assert known.cached() == (False, None)
