"""Prometheus metrics: what workers count as attempts end, and what the API reads from
the database at each scrape.

A worker started with ``CAIRN_METRICS_PORT`` serves ``/metrics`` from its main process.
Prefork children count into files of a private directory (prometheus-client's
multiprocess mode), which the main process sums at each scrape; the directory is set
before the first child forks and emptied at start, and a child's files are marked dead
when it exits. The metric objects are made on first use, in the process that counts, so
they pick up that mode.

Labels are bounded: a map's elements count under their map step's key (``each``, not
``each[812]``).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values

#: Step durations and queue waits, in seconds: from a fast step to a long LLM call.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200)
_ELEMENT = re.compile(r"\[\d+\]$")


@dataclass
class _Metrics:
    attempts: Counter
    ended: Counter
    duration: Histogram
    queue_wait: Histogram
    lease_losses: Counter
    spend: Counter
    tokens: Counter
    recovery: Counter
    rate_waits: Counter
    rate_waited: Counter


_made: list[_Metrics] = []
_lock = threading.Lock()


def _metrics() -> _Metrics:
    with _lock:
        if not _made:
            _made.append(_make())
        return _made[0]


def _make(registry: CollectorRegistry = prometheus_client.REGISTRY) -> _Metrics:
    """The worker's metrics, registered in ``registry`` (the process's; a test gives one
    of its own, so making them twice in one process is no duplicate)."""
    counter = functools.partial(Counter, registry=registry)
    histogram = functools.partial(Histogram, registry=registry)
    return _Metrics(
        attempts=counter("cairn_attempts", "Step attempts claimed", ["workflow", "step"]),
        ended=counter(
            "cairn_steps",
            "Step attempts ended, by outcome (succeeded, failed, retried, released, "
            "waiting, cancelled, superseded, throttled)",
            ["workflow", "step", "outcome"],
        ),
        duration=histogram(
            "cairn_step_duration_seconds",
            "Duration of succeeded attempts",
            ["workflow", "step"],
            buckets=BUCKETS,
        ),
        queue_wait=histogram(
            "cairn_step_queue_wait_seconds",
            "From queued to claimed",
            ["workflow", "step"],
            buckets=BUCKETS,
        ),
        lease_losses=counter("cairn_lease_losses", "Attempts that lost their lease (superseded)"),
        spend=counter(
            "cairn_spend_usd", "Money recorded by steps, committed", ["provider", "model"]
        ),
        tokens=counter(
            "cairn_tokens",
            "Tokens recorded by steps, committed",
            ["provider", "model", "direction"],
        ),
        rate_waits=counter(
            "cairn_rate_limit_waits", "Takes of a rate limit that had to wait", ["limit"]
        ),
        rate_waited=counter(
            "cairn_rate_limit_wait_seconds", "Time spent waiting for rate limits", ["limit"]
        ),
        recovery=counter(
            "cairn_recovery_actions",
            "What the reaper and reconciler did (requeued, failed, redispatched, ...)",
            ["action"],
        ),
    )


def step_label(key: str) -> str:
    """The step label of a step key: a map element counts under its map step."""
    return _ELEMENT.sub("", key)


def claimed(workflow: str, key: str, queue_wait_s: float | None) -> None:
    """An attempt was claimed (after ``queue_wait_s`` in the queue, if known)."""
    m, step = _metrics(), step_label(key)
    m.attempts.labels(workflow, step).inc()
    if queue_wait_s is not None and queue_wait_s >= 0:
        m.queue_wait.labels(workflow, step).observe(queue_wait_s)


def ended(workflow: str, key: str, outcome: str, duration_s: float | None = None) -> None:
    """An attempt ended with ``outcome`` (and took ``duration_s``, when it succeeded)."""
    m, step = _metrics(), step_label(key)
    m.ended.labels(workflow, step, outcome).inc()
    if outcome == "superseded":
        m.lease_losses.inc()
    if duration_s is not None:
        m.duration.labels(workflow, step).observe(duration_s)


def spent(costs: Iterable[Any]) -> None:
    """Committed cost records: ``(seq, provider, model, input_tokens, output_tokens, usd,
    meta)`` entries."""
    m = _metrics()
    for cost in costs:
        usd: Decimal = cost.usd
        if usd:
            m.spend.labels(cost.provider, cost.model).inc(float(usd))
        if cost.input_tokens:
            m.tokens.labels(cost.provider, cost.model, "input").inc(cost.input_tokens)
        if cost.output_tokens:
            m.tokens.labels(cost.provider, cost.model, "output").inc(cost.output_tokens)


def rate_limited(name: str, waited_s: float) -> None:
    """A rate limit was taken after ``waited_s`` seconds (counted when it had to wait)."""
    if waited_s > 0:
        m = _metrics()
        m.rate_waits.labels(name).inc()
        m.rate_waited.labels(name).inc(waited_s)


def recovered(action: str, count: int) -> None:
    """The reaper or the reconciler acted on ``count`` steps."""
    if count:
        _metrics().recovery.labels(action).inc(count)


def serve_multiprocess(port: int, directory: Path, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` from this (main) process, summing the counts
    of its prefork children, which write under ``directory`` (emptied first)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # Chosen when prometheus_client was imported, maybe before the variable was set.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    prometheus_client.start_http_server(port, addr=host, registry=registry)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` of this one process (beat) on ``host:port``."""
    prometheus_client.start_http_server(port, addr=host)


def child_exited(pid: int) -> None:
    """A prefork child is gone: its live gauges no longer count (its counters do)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
