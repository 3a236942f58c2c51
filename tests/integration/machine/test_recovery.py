"""Recovery without a person: a worker killed with -9, and a Redis that lost everything."""

from __future__ import annotations

import re
import time
from pathlib import Path

from db.models import Checkpoint, CostRecord, Message
from tests.support import servers
from tests.support.queries import count
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client


def wait_for_line(trace_dir: Path, pattern: str, timeout: float = 30) -> float:
    """Wait until a trace line matches ``pattern``; return when it was seen (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(re.search(pattern, line) for line in trace_lines(trace_dir)):
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"no trace line matched {pattern!r}: {trace_lines(trace_dir)}")


def test_kill_9_mid_step_resumes_from_the_checkpoint_on_another_worker(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    doomed = stack.start_worker(concurrency=1)
    spec = {"name": "long", "steps": [{"key": "work", "task": "t.loop"}]}
    run_id = client.start_run(
        spec=spec, inputs={"iterations": 30, "pause_s": 0.3, "trace_dir": str(trace_dir)}
    )
    wait_for_line(trace_dir, r"loop iteration 2 attempt=1")
    stack.start_worker(concurrency=1)
    stack.start_beat()
    assert "loop iteration 29 attempt=1" not in trace_lines(trace_dir), "ended before the kill"
    killed_at = time.monotonic()
    doomed.kill()

    resumed_at = wait_for_line(trace_dir, r"loop start attempt=2", timeout=30)
    lease = client.settings.lease_s
    assert resumed_at - killed_at <= 2 * lease, f"picked up after {resumed_at - killed_at:.1f}s"
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.outputs == {"work": {"done": 30, "attempt": 2}}

    start = next(line for line in trace_lines(trace_dir) if "attempt=2" in line)
    resumed_from = int(start.split("from=")[1])
    assert resumed_from >= 3  # the checkpoints of attempt 1 were kept
    # Every effect exactly once: one checkpoint, cost and message per iteration.
    engine = client.runtime.engine
    assert count(engine, Checkpoint, run_id=run_id) == 30
    assert count(engine, CostRecord, run_id=run_id) == 30
    assert count(engine, Message, run_id=run_id) == 30
    assert str(view.cost_usd.normalize()) == "0.3"


def test_redis_flushed_mid_run_the_run_still_completes(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    stack.start_beat()
    stack.start_beat()  # two beats at once: every recovery verb must stay safe
    branches = [{"key": f"b{i}", "task": "t.sleep", "after": ["a"]} for i in range(4)]
    spec = {
        "name": "flushed",
        "steps": [
            {"key": "a", "task": "t.increment"},
            *branches,
            {"key": "z", "task": "t.join", "after": [b["key"] for b in branches]},
        ],
    }
    run_id = client.start_run(
        spec=spec, inputs={"x": 1, "seconds": 0.5, "trace_dir": str(trace_dir)}
    )
    wait_for_line(trace_dir, r"^sleep b\d 1$")
    servers.redis_client().flushdb()  # every queued message is gone
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    lines = trace_lines(trace_dir)
    for i in range(4):
        assert lines.count(f"sleep b{i} 1") == 1
    assert lines.count("join 1") == 1
