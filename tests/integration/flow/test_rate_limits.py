"""Rate limits shared by every worker (token buckets in Redis): 10 requests/s holds
within 10% over 30 s across 2 workers; a step's declared limits are taken before its
code runs; an unknown limit fails the step naming the known ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client

LIMITS = json.dumps({"test:api": {"requests_per_s": 10}, "slow:api": {"requests_per_min": 60}})


def call_times(trace_dir: Path) -> list[float]:
    return sorted(float(line.split()[1]) for line in trace_lines(trace_dir))


@pytest.mark.parametrize("backend", ["postgresql"])  # the buckets are in Redis either way
def test_ten_requests_a_second_hold_across_two_workers(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    env = {"CAIRN_RATE_LIMITS": LIMITS}
    stack.start_worker(concurrency=2, env=env)
    stack.start_worker(concurrency=2, env=env)
    spec = {"name": "limited-calls", "steps": [{"key": "call", "task": "t.ratelimited"}]}
    runs = [
        client.start_run(spec=spec, inputs={"calls": 80, "trace_dir": str(trace_dir)})
        for _ in range(4)
    ]
    for run_id in runs:
        assert client.wait(run_id, timeout=120).status == "succeeded"
    times = call_times(trace_dir)
    assert len(times) == 320
    start = times[0]
    in_window = [t for t in times if t < start + 30]
    # A full bucket (10) at the start, then 10 a second: 310 at most, 270 at least.
    assert 270 <= len(in_window) <= 330, len(in_window)
    for second in range(1, 29):  # and no second of it saw a burst past the refill
        burst = [t for t in times if start + second <= t < start + second + 1]
        assert len(burst) <= 12, (second, len(burst))


# The buckets are in Redis whatever the database.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_steps_declared_limit_is_taken_before_its_code(
    stack: Stack, client: Client, trace_dir: Path
) -> None:
    stack.start_worker(concurrency=3, env={"CAIRN_RATE_LIMITS": LIMITS})
    spec = {
        "name": "declared",
        "steps": [{"key": "call", "task": "t.ratelimited", "rate_limits": ["slow:api"]}],
    }
    # slow:api is 60 a minute: a bucket of 60, so 60 steps go at once and the 61st waits.
    runs = [
        client.start_run(spec=spec, inputs={"calls": 0, "trace_dir": str(trace_dir)})
        for _ in range(3)
    ]
    assert [client.wait(r, timeout=30).status for r in runs] == ["succeeded"] * 3
    bad = {
        "name": "unknown-limit",
        "steps": [{"key": "call", "task": "t.ratelimited", "rate_limits": ["nope"]}],
    }
    view = client.wait(client.start_run(spec=bad, inputs={"calls": 0}), timeout=30)
    assert view.status == "failed"
    assert view.error is not None
    assert "no rate limit 'nope' in CAIRN_RATE_LIMITS (slow:api, test:api)" in view.error["message"]


def test_requests_and_tokens_are_taken_together_or_not_at_all(stack_settings: object) -> None:
    from worker.errors import DefinitionError
    from worker.ratelimit import RateLimiter
    from worker.settings import RateLimit, Settings

    assert isinstance(stack_settings, Settings)
    limited = stack_settings.model_copy(
        update={"rate_limits": {"llm": RateLimit(requests_per_s=100, tokens_per_s=1000)}}
    )
    limiter = RateLimiter(limited)
    assert limiter.try_acquire("llm", tokens=600) == 0
    # 400 tokens left: 600 more must wait ~0.2 s, and the request is not taken either.
    wait = limiter.try_acquire("llm", tokens=600)
    assert 0.1 < wait <= 0.25
    assert limiter.acquire("llm", tokens=600) > 0.1
    with pytest.raises(DefinitionError, match="more than rate limit 'llm' ever allows"):
        limiter.try_acquire("llm", tokens=5000)
    with pytest.raises(DefinitionError, match="no rate limit 'other'"):
        limiter.try_acquire("other")
