"""Workflows run by real worker processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from db.models import CostRecord, Message
from tests.support.queries import count, event_kinds
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client


def chain(n: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"key": "s0", "task": "t.increment"}]
    steps += [{"key": f"s{i}", "task": "t.increment", "after": [f"s{i - 1}"]} for i in range(1, n)]
    return {"name": f"chain{n}", "steps": steps}


def test_linear_workflow_passes_outputs_from_step_to_step(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker()
    run_id = client.start_run(spec=chain(10), inputs={"x": 0, "trace_dir": str(trace_dir)})
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.outputs == {"s9": {"x": 10}}
    assert [s.output for s in view.steps] == [{"x": i} for i in range(1, 11)]
    assert all(s.attempt == 1 for s in view.steps)
    assert sorted(trace_lines(trace_dir)) == sorted(f"increment s{i} 1" for i in range(10))
    kinds = event_kinds(client.runtime.engine, run_id)
    assert kinds[0] == "start_run"
    assert kinds.count("claim_step") == kinds.count("complete_step") == 10
    assert kinds[-1] == "finish_run"
    # A step's metrics are its row's times: queued, started, finished.
    for s in view.steps:
        assert s.queued_at is not None
        assert s.started_at is not None
        assert s.finished_at is not None
        assert s.queued_at <= s.started_at <= s.finished_at


def test_fan_out_joins_exactly_once(stack: Stack, client: Client, trace_dir: Path) -> None:
    stack.start_worker(concurrency=3)
    stack.start_worker(concurrency=3)
    items = [{"key": f"i{n:02d}", "task": "t.item"} for n in range(20)]
    spec = {
        "name": "fan",
        "steps": [*items, {"key": "join", "task": "t.join", "after": [s["key"] for s in items]}],
    }
    run_id = client.start_run(spec=spec, inputs={"trace_dir": str(trace_dir)})
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.outputs == {"join": {"items": [f"i{n:02d}" for n in range(20)]}}
    assert trace_lines(trace_dir) == ["join 1"]
    assert event_kinds(client.runtime.engine, run_id).count("claim_step") == 21


def test_retry_with_backoff_then_success(stack: Stack, client: Client, trace_dir: Path) -> None:
    stack.start_worker()
    retry = {"max_attempts": 3, "backoff_base_s": 0.5, "jitter": 0}
    spec = {"name": "flaky", "steps": [{"key": "f", "task": "t.flaky", "retry": retry}]}
    run_id = client.start_run(spec=spec, inputs={"fail_times": 2, "trace_dir": str(trace_dir)})
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.outputs == {"f": {"attempts": 3}}
    times = [float(line.split()[2]) for line in trace_lines(trace_dir)]
    assert [line.split()[1] for line in trace_lines(trace_dir)] == ["1", "2", "3"]
    assert times[1] - times[0] >= 0.5  # base
    assert times[2] - times[1] >= 1.0  # base x 2
    kinds = event_kinds(client.runtime.engine, run_id)
    assert kinds.count("fail_step") == 2
    assert kinds.count("requeue_step") == 2


def test_non_retryable_error_fails_the_run_and_cancels_the_rest(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker()
    spec = {
        "name": "doomed",
        "steps": [
            {"key": "bad", "task": "t.fatal", "retry": {"max_attempts": 5}},
            {"key": "next", "task": "t.increment", "after": ["bad"]},
        ],
    }
    run_id = client.start_run(spec=spec, inputs={"x": 1, "trace_dir": str(trace_dir)})
    view = client.wait(run_id, timeout=60)
    assert view.status == "failed"
    assert view.step("bad").status == "failed"
    assert view.step("bad").attempt == 1
    assert view.step("next").status == "cancelled"
    assert view.error is not None
    assert view.error["step"] == "bad"
    assert view.error["type"] == "NonRetryableError"
    assert "the input can never work" in view.error["message"]
    assert "Traceback" in view.error["traceback"]
    assert trace_lines(trace_dir) == ["fatal 1"]


def test_step_over_its_timeout_is_retried_then_failed(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker()
    spec = {
        "name": "slow",
        "steps": [
            {
                "key": "hang",
                "task": "t.sleep",
                "timeout_s": 0.5,
                "retry": {"max_attempts": 2, "backoff_base_s": 0.1},
            }
        ],
    }
    run_id = client.start_run(spec=spec, inputs={"seconds": 30, "trace_dir": str(trace_dir)})
    started = time.monotonic()
    view = client.wait(run_id, timeout=30)
    assert time.monotonic() - started < 10
    assert view.status == "failed"
    step = view.step("hang")
    assert (step.status, step.attempt) == ("failed", 2)
    assert step.error is not None
    assert step.error["type"] == "StepTimeout"
    assert trace_lines(trace_dir) == ["sleep hang 1", "sleep hang 2"]


def test_cancel_mid_run(stack: Stack, client: Client, trace_dir: Path) -> None:
    stack.start_worker()
    spec = {
        "name": "cancellable",
        "steps": [
            {"key": "watch", "task": "t.watch_cancel"},
            {"key": "after", "task": "t.increment", "after": ["watch"]},
        ],
    }
    run_id = client.start_run(spec=spec, inputs={"x": 0, "trace_dir": str(trace_dir)})
    deadline = time.monotonic() + 30
    while "watch_cancel started" not in trace_lines(trace_dir):
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    assert client.cancel(run_id, reason="changed my mind") is True
    assert client.cancel(run_id) is False  # already cancelled
    deadline = time.monotonic() + 30
    while client.get_run(run_id).step("watch").status == "running":
        assert time.monotonic() < deadline, "the running step never stopped"
        time.sleep(0.1)
    view = client.get_run(run_id)
    assert view.status == "cancelled"
    assert view.step("watch").status == "cancelled"
    assert view.step("after").status == "cancelled"
    assert "watch_cancel saw cancelled=True" in trace_lines(trace_dir)
    kinds = event_kinds(client.runtime.engine, run_id)
    assert "cancel_run" in kinds
    assert "cancel_step" in kinds


def test_checkpoints_costs_and_messages_are_recorded_once(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker()
    spec = {"name": "loop", "steps": [{"key": "work", "task": "t.loop"}]}
    run_id = client.start_run(
        spec=spec, inputs={"iterations": 4, "pause_s": 0.01, "trace_dir": str(trace_dir)}
    )
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    engine = client.runtime.engine
    assert count(engine, CostRecord, run_id=run_id) == 4
    assert count(engine, Message, run_id=run_id) == 4
    assert str(view.cost_usd.normalize()) == "0.04"
