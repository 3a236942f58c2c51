"""Prometheus: a real worker's /metrics (prefork, multiprocess mode) after a run counts
exactly its attempts, outcomes, durations and spend."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.machine.test_recovery import wait_for_line
from tests.support.stack import Stack
from worker.client import Client
from worker.devstack import free_port

SPEC = {
    "name": "obs",
    "steps": [
        {"key": "s1", "task": "t.write"},
        {
            "key": "s2",
            "task": "t.flaky",
            "after": ["s1"],
            "retry": {"max_attempts": 2, "backoff_base_s": 0.1},
        },
        {"key": "s3", "task": "t.write", "after": ["s2"]},
    ],
}


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page, by name and labels."""
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


@pytest.mark.parametrize("backend", ["postgresql"])  # the counters do not touch the database
def test_a_workers_metrics_count_a_run(stack: Stack, client: Client, trace_dir: Path) -> None:
    port = free_port()
    stack.start_worker(concurrency=2, env={"CAIRN_METRICS_PORT": str(port)})
    url = f"http://127.0.0.1:{port}/metrics"
    before = scrape(url)
    assert not [k for k in before if k[0] == "cairn_steps_total"]  # a fresh worker
    run_id = client.start_run(spec=SPEC, inputs={"fail_times": 1, "trace_dir": str(trace_dir)})
    assert client.wait(run_id, timeout=60).status == "succeeded"
    deadline = time.monotonic() + 10
    while True:  # the last attempt's counts are written just after its commit
        got = scrape(url)
        if got.get(("cairn_steps_total", labels(workflow="obs", step="s3", outcome="succeeded"))):
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    steps = {
        (dict(k[1])["step"], dict(k[1])["outcome"]): v
        for k, v in got.items()
        if k[0] == "cairn_steps_total"
    }
    assert steps == {
        ("s1", "succeeded"): 1,
        ("s2", "retried"): 1,
        ("s2", "succeeded"): 1,
        ("s3", "succeeded"): 1,
    }
    attempts = {dict(k[1])["step"]: v for k, v in got.items() if k[0] == "cairn_attempts_total"}
    assert attempts == {"s1": 1, "s2": 2, "s3": 1}
    assert got[("cairn_spend_usd_total", labels(provider="llm", model="model-x"))] == 0.02
    for step in ("s1", "s2", "s3"):
        key = ("cairn_step_duration_seconds_count", labels(workflow="obs", step=step))
        assert got[key] == 1
        wait = ("cairn_step_queue_wait_seconds_count", labels(workflow="obs", step=step))
        assert got[wait] >= 1


@pytest.mark.parametrize("backend", ["postgresql"])  # the counters do not touch the database
def test_beats_metrics_count_the_reapers_work(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    doomed = stack.start_worker(concurrency=1)
    port = free_port()
    stack.start_beat(env={"CAIRN_BEAT_METRICS_PORT": str(port)})
    spec = {"name": "long", "steps": [{"key": "nap", "task": "t.sleep"}]}
    run_id = client.start_run(spec=spec, inputs={"seconds": 4, "trace_dir": str(trace_dir)})
    wait_for_line(trace_dir, r"sleep nap 1")
    doomed.kill()
    stack.start_worker(concurrency=1)
    assert client.wait(run_id, timeout=60).status == "succeeded"
    got = scrape(f"http://127.0.0.1:{port}/metrics")
    assert got[("cairn_recovery_actions_total", labels(action="reaper_requeued"))] == 1
