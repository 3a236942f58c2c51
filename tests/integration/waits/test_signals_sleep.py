"""Signals are delivered exactly once, whether sent before or after the step waits;
durable sleep frees the worker and resumes; waits replay without waiting again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Signal
from db.session import transaction
from tests.integration.waits.test_approvals import wait_for
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client
from worker.errors import DefinitionError, NotFound, PayloadTooLarge, RunEnded

ONE = {"name": "signalled", "steps": [{"key": "listen", "task": "t.signal"}]}


def waiting_at(client: Client, run_id: object, key: str, attempt: int) -> bool:
    step = client.get_run(run_id).step(key)  # type: ignore[arg-type]
    return step.status == "waiting" and step.attempt == attempt


def delivered(client: Client) -> list[tuple[str, bool]]:
    with transaction(client.runtime.engine) as session:
        rows = session.execute(select(Signal.name, Signal.wait_id).order_by(Signal.created_at))
        return [(name, wait_id is not None) for name, wait_id in rows]


def test_signal_sent_after_the_wait_is_delivered_once(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    run_id = client.start_run(spec=ONE, inputs={"times": 2, "trace_dir": str(trace_dir)})
    wait_for(lambda: client.get_run(run_id).step("listen").status == "waiting", what="the wait")
    client.signal(run_id, "go", {"n": 1})
    wait_for(lambda: waiting_at(client, run_id, "listen", 2), what="the second wait")
    client.signal(run_id, "go", [2, "two"])
    view = client.wait(run_id, timeout=30)
    assert view.status == "succeeded"
    assert view.step("listen").output == {"payloads": [{"n": 1}, [2, "two"]]}
    assert delivered(client) == [("go", True), ("go", True)]
    assert trace_lines(trace_dir) == [
        "signal before 1",
        "signal before 2",
        "signal before 3",
        "signal after 3",
    ]


def test_signal_sent_before_the_wait_is_kept_for_it(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    spec = {
        "name": "early",
        "steps": [
            {"key": "first", "task": "t.sleep"},
            {"key": "listen", "task": "t.signal", "after": ["first"]},
        ],
    }
    run_id = client.start_run(spec=spec, inputs={"seconds": 0.1, "trace_dir": str(trace_dir)})
    client.signal(run_id, "go", "early bird")  # no worker yet: nothing waits
    client.signal(run_id, "other", 1)  # another name is not delivered to this wait
    stack.start_worker(concurrency=1)
    view = client.wait(run_id, timeout=30)
    assert view.step("listen").output == {"payloads": ["early bird"]}
    # Delivered without waiting: the step ran once.
    assert [line for line in trace_lines(trace_dir) if line.startswith("signal")] == [
        "signal before 1",
        "signal after 1",
    ]
    assert delivered(client) == [("go", True), ("other", False)]


def test_signal_wait_times_out(stack: Stack, client: Client, trace_dir: Path) -> None:
    stack.start_worker(concurrency=1)
    stack.start_beat()
    run_id = client.start_run(spec=ONE, inputs={"timeout": 1.0, "trace_dir": str(trace_dir)})
    view = client.wait(run_id, timeout=30)
    assert view.status == "failed"
    assert view.step("listen").error["type"] == "SignalTimeout"


def test_bad_signals_are_refused(stack: Stack, client: Client) -> None:
    run_id = client.start_run(spec=ONE)
    with pytest.raises(DefinitionError, match="name"):
        client.signal(run_id, "", 1)
    with pytest.raises(PayloadTooLarge):
        client.signal(run_id, "go", "x" * (client.settings.inline_limit_bytes + 10))
    with pytest.raises(NotFound):
        client.signal("01a207c8-b921-72df-8d7d-a170254d2173", "go", 1)
    client.cancel(run_id)
    with pytest.raises(RunEnded, match="takes no signal"):
        client.signal(run_id, "go", 1)
    assert delivered(client) == []


def test_durable_sleep_frees_the_worker_and_waits_replay(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=1)
    stack.start_beat()
    spec = {"name": "napper", "steps": [{"key": "nap", "task": "t.nap"}]}
    run_id = client.start_run(spec=spec, inputs={"seconds": 2.0, "trace_dir": str(trace_dir)})
    wait_for(lambda: client.get_run(run_id).step("nap").status == "waiting", what="the sleep")
    started = time.time()
    # The only worker is free while the step sleeps.
    other = client.start_run(spec={"name": "free", "steps": [{"key": "a", "task": "t.item"}]})
    assert client.wait(other, timeout=10).status == "succeeded"
    assert time.time() - started < 2.0
    wait_for(lambda: waiting_at(client, run_id, "nap", 2), timeout=20, what="the signal wait")
    client.signal(run_id, "after-nap", "done")
    view = client.wait(run_id, timeout=30)
    assert view.status == "succeeded"
    assert view.step("nap").output == {"payload": "done"}
    lines = trace_lines(trace_dir)
    kinds = [" ".join(line.split()[:3]) for line in lines]
    # Attempt 1 sleeps; 2 replays the sleep and waits for the signal; 3 replays both.
    assert kinds == [
        "nap before 1",
        "nap before 2",
        "nap slept 2",
        "nap before 3",
        "nap slept 3",
        "nap after 3",
    ]
    slept_at = float(lines[2].split()[-1])
    asked_at = float(lines[0].split()[-1])
    assert slept_at - asked_at >= 2.0  # the sleep lasted its length
