"""The retry policy: backoff, when a failed attempt is retried, when a released one is."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from worker.definitions.spec import RetryPolicy
from worker.errors import DefinitionError, StaleAttempt, error_types, is_retryable
from worker.machine.retry import (
    RELEASE_BACKOFF_MAX_S,
    RetryDecision,
    backoff_delay,
    decide,
    decide_release,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: The bound ``RetryPolicy`` puts on ``max_attempts``: attempts numbered 1..100.
MAX_ATTEMPTS = 100
#: The bound ``Settings.server_max_releases`` accepts.
MAX_SERVER_RELEASES = 100_000


class _Low(random.Random):
    """Jitter always at the low end of its range."""

    def uniform(self, a: float, b: float) -> float:
        return a


class _High(random.Random):
    """Jitter always at the high end of its range."""

    def uniform(self, a: float, b: float) -> float:
        return b


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    """Any policy the spec accepts."""
    base = draw(st.floats(min_value=0, max_value=86400))
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=MAX_ATTEMPTS)),
        backoff_base_s=base,
        backoff_max_s=draw(st.floats(min_value=base, max_value=86400)),
        jitter=draw(st.floats(min_value=0, max_value=1)),
    )


def _seconds(decision: RetryDecision) -> float:
    assert decision.next_attempt_at is not None
    return (decision.next_attempt_at - NOW).total_seconds()


# --- backoff_delay ---------------------------------------------------------------------


def test_delay_doubles_from_the_base_until_the_cap() -> None:
    policy = RetryPolicy(max_attempts=20, backoff_base_s=1.0, backoff_max_s=300.0, jitter=0)
    delays = [backoff_delay(policy, attempt) for attempt in range(1, 12)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_delay_of_a_non_integral_base() -> None:
    policy = RetryPolicy(backoff_base_s=0.25, backoff_max_s=10.0, jitter=0)
    assert [backoff_delay(policy, a) for a in (1, 2, 3, 6, 7)] == [0.25, 0.5, 1.0, 8.0, 10.0]


def test_a_zero_base_means_no_wait() -> None:
    policy = RetryPolicy(backoff_base_s=0, backoff_max_s=0, jitter=0.5)
    assert backoff_delay(policy, 1) == 0.0
    assert backoff_delay(policy, 50) == 0.0


def test_jitter_spreads_the_delay_both_ways() -> None:
    policy = RetryPolicy(backoff_base_s=10.0, backoff_max_s=100.0, jitter=0.5)
    assert backoff_delay(policy, 1, _Low()) == 5.0
    assert backoff_delay(policy, 1, _High()) == 15.0
    assert backoff_delay(policy, 5, _Low()) == 50.0  # capped at 100, then jittered
    assert backoff_delay(policy, 5, _High()) == 150.0


def test_full_jitter_at_its_low_end_is_zero_not_negative() -> None:
    policy = RetryPolicy(backoff_base_s=7.0, backoff_max_s=7.0, jitter=1.0)
    assert backoff_delay(policy, 3, _Low()) == 0.0


def test_the_same_seed_gives_the_same_delay() -> None:
    policy = RetryPolicy(backoff_base_s=3.0, backoff_max_s=60.0, jitter=0.3)
    first = [backoff_delay(policy, a, random.Random(7)) for a in range(1, 8)]
    again = [backoff_delay(policy, a, random.Random(7)) for a in range(1, 8)]
    assert first == again


def test_jitter_actually_varies_the_delay() -> None:
    policy = RetryPolicy(backoff_base_s=10.0, backoff_max_s=10.0, jitter=0.5)
    rand = random.Random(1)
    assert len({backoff_delay(policy, 1, rand) for _ in range(50)}) > 40


@given(
    policy=policies(),
    attempt=st.integers(min_value=1, max_value=MAX_ATTEMPTS),
    seed=st.integers(),
)
def test_delay_stays_within_the_jittered_cap(policy: RetryPolicy, attempt: int, seed: int) -> None:
    delay = backoff_delay(policy, attempt, random.Random(seed))
    unjittered = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
    slack = 1e-9 * max(1.0, unjittered)
    assert math.isfinite(delay)
    assert delay >= 0.0
    assert delay <= policy.backoff_max_s * (1 + policy.jitter) + slack
    assert (
        unjittered * (1 - policy.jitter) - slack
        <= delay
        <= unjittered * (1 + policy.jitter) + slack
    )


@given(policy=policies(), attempt=st.integers(min_value=1, max_value=MAX_ATTEMPTS - 1))
def test_without_jitter_the_delay_never_shrinks(policy: RetryPolicy, attempt: int) -> None:
    steady = policy.model_copy(update={"jitter": 0.0})
    assert backoff_delay(steady, attempt) <= backoff_delay(steady, attempt + 1)
    assert backoff_delay(steady, attempt + 1) <= steady.backoff_max_s


# --- decide ------------------------------------------------------------------------------


def test_attempts_left_are_retried_and_the_last_fails_for_good() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base_s=2.0, jitter=0)
    first = decide(policy, 1, ("ValueError", "Exception"), NOW)
    second = decide(policy, 2, ("ValueError", "Exception"), NOW)
    last = decide(policy, 3, ("ValueError", "Exception"), NOW)
    assert first.retry
    assert second.retry
    assert first.next_attempt_at == NOW + timedelta(seconds=2)
    assert second.next_attempt_at == NOW + timedelta(seconds=4)
    assert not last.retry
    assert last == RetryDecision(None)


def test_an_attempt_past_the_last_fails_for_good() -> None:
    policy = RetryPolicy(max_attempts=2)
    assert not decide(policy, 5, ("ValueError",), NOW).retry


def test_the_default_policy_never_retries() -> None:
    assert RetryPolicy().max_attempts == 1
    assert not decide(RetryPolicy(), 1, ("ValueError", "Exception"), NOW).retry


def test_an_error_that_says_it_is_not_retryable_fails_at_once() -> None:
    policy = RetryPolicy(max_attempts=10)
    assert not decide(policy, 1, ("Whatever",), NOW, retryable=False).retry


def test_a_cairn_error_speaks_for_itself() -> None:
    policy = RetryPolicy(max_attempts=10, jitter=0)
    fatal = DefinitionError("inputs.x", "is not JSON")
    assert is_retryable(fatal) is False
    assert not decide(policy, 1, error_types(fatal), NOW, retryable=is_retryable(fatal)).retry
    transient = StaleAttempt()
    assert decide(policy, 1, error_types(transient), NOW, retryable=is_retryable(transient)).retry


def test_a_name_in_non_retryable_fails_at_once() -> None:
    policy = RetryPolicy(max_attempts=10, non_retryable=("PermissionError",))
    exc = PermissionError("denied")
    assert not decide(policy, 1, error_types(exc), NOW).retry


def test_a_base_class_name_in_non_retryable_covers_its_subclasses() -> None:
    class QuotaExceeded(PermissionError):
        pass

    policy = RetryPolicy(max_attempts=10, non_retryable=("OSError",))
    exc = QuotaExceeded("no more")
    assert "OSError" in error_types(exc)
    assert not decide(policy, 1, error_types(exc), NOW).retry
    lookup = RetryPolicy(max_attempts=10, non_retryable=("LookupError",))
    assert not decide(lookup, 1, error_types(KeyError("k")), NOW).retry


def test_an_unlisted_error_is_retried() -> None:
    policy = RetryPolicy(max_attempts=10, non_retryable=("PermissionError", "KeyError"))
    assert decide(policy, 1, error_types(ValueError("v")), NOW).retry
    # A subclass name does not cover its base: only the error's own class and bases count.
    assert decide(policy, 1, error_types(LookupError("l")), NOW).retry


def test_names_are_matched_exactly() -> None:
    policy = RetryPolicy(max_attempts=10, non_retryable=("valueerror", "Value"))
    assert decide(policy, 1, error_types(ValueError("v")), NOW).retry


def test_next_attempt_is_now_plus_the_backoff_delay() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_base_s=5.0, backoff_max_s=600.0, jitter=0.4)
    for attempt in range(1, 10):
        decision = decide(policy, attempt, ("E",), NOW, random.Random(attempt))
        expected = backoff_delay(policy, attempt, random.Random(attempt))
        assert decision.next_attempt_at == NOW + timedelta(seconds=expected)


@given(
    policy=policies(),
    attempt=st.integers(min_value=1, max_value=MAX_ATTEMPTS),
    seed=st.integers(),
)
def test_a_retry_is_scheduled_within_the_jittered_cap(
    policy: RetryPolicy, attempt: int, seed: int
) -> None:
    decision = decide(policy, attempt, ("RuntimeError", "Exception"), NOW, random.Random(seed))
    assert decision.retry is (attempt < policy.max_attempts)
    if decision.retry:
        seconds = _seconds(decision)
        # timedelta keeps microseconds: allow one for its rounding.
        assert -1e-6 <= seconds <= policy.backoff_max_s * (1 + policy.jitter) + 1e-6
        assert decision.next_attempt_at is not None
        assert decision.next_attempt_at.tzinfo is UTC


@given(
    policy=policies(),
    attempt=st.integers(min_value=1, max_value=MAX_ATTEMPTS),
    listed=st.sampled_from(["OSError", "PermissionError", "Exception"]),
)
def test_a_listed_error_is_never_retried(policy: RetryPolicy, attempt: int, listed: str) -> None:
    strict = policy.model_copy(update={"non_retryable": (listed,)})
    assert not decide(strict, attempt, error_types(PermissionError("x")), NOW).retry


# --- decide_release -----------------------------------------------------------------------


def test_release_backoff_doubles_from_half_a_second() -> None:
    assert _seconds(decide_release(0, 10, NOW, _High())) == 0.5
    assert _seconds(decide_release(0, 10, NOW, _Low())) == 0.25
    assert _seconds(decide_release(3, 10, NOW, _High())) == 4.0
    assert _seconds(decide_release(3, 10, NOW, _Low())) == 2.0


def test_release_backoff_is_capped() -> None:
    assert RELEASE_BACKOFF_MAX_S == 60.0
    assert _seconds(decide_release(7, 100, NOW, _High())) == RELEASE_BACKOFF_MAX_S
    assert _seconds(decide_release(50, 100, NOW, _High())) == RELEASE_BACKOFF_MAX_S
    assert _seconds(decide_release(50, 100, NOW, _Low())) == RELEASE_BACKOFF_MAX_S / 2


def test_releases_up_to_the_bound_run_again_then_it_gives_up() -> None:
    assert decide_release(0, 3, NOW).retry
    assert decide_release(2, 3, NOW).retry  # the third release is still allowed
    assert decide_release(3, 3, NOW) == RetryDecision(None)
    assert decide_release(4, 3, NOW) == RetryDecision(None)
    assert decide_release(0, 1, NOW).retry
    assert not decide_release(1, 1, NOW).retry


def test_release_backoff_after_a_thousand_releases_is_still_capped() -> None:
    # ``server_max_releases`` may be set up to 100,000: a long outage must not crash the
    # decision (0.5 * 2**1024 does not fit a float).
    decision = decide_release(1024, MAX_SERVER_RELEASES, NOW, _High())
    assert _seconds(decision) == RELEASE_BACKOFF_MAX_S


@given(
    max_releases=st.integers(min_value=1, max_value=MAX_SERVER_RELEASES),
    data=st.data(),
    seed=st.integers(),
)
def test_a_release_waits_a_bounded_time_or_gives_up(
    max_releases: int, data: st.DataObject, seed: int
) -> None:
    releases = data.draw(st.integers(min_value=0, max_value=max_releases + 5))
    decision = decide_release(releases, max_releases, NOW, random.Random(seed))
    assert decision.retry is (releases < max_releases)
    if decision.retry:
        assert 0.25 - 1e-6 <= _seconds(decision) <= RELEASE_BACKOFF_MAX_S + 1e-6


def test_retry_decision_says_whether_to_retry() -> None:
    assert RetryDecision(NOW).retry is True
    assert RetryDecision(None).retry is False
