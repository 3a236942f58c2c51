"""Retry policy: pure decisions about a failed attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.definitions.spec import RetryPolicy


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Retry at ``next_attempt_at``, or (when it is None) fail for good."""

    next_attempt_at: datetime | None

    @property
    def retry(self) -> bool:
        """True when the step gets another attempt."""
        return self.next_attempt_at is not None


def backoff_delay(policy: RetryPolicy, attempt: int, rand: random.Random | None = None) -> float:
    """Seconds to wait after failed ``attempt``: base x 2^(attempt-1), capped, jittered."""
    delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
    spread = delay * policy.jitter
    jittered: float = delay + (rand or random).uniform(-spread, spread)
    return max(0.0, jittered)


def decide(
    policy: RetryPolicy,
    attempt: int,
    error_types: tuple[str, ...],
    now: datetime,
    rand: random.Random | None = None,
    *,
    retryable: bool = True,
) -> RetryDecision:
    """Whether failed ``attempt`` is retried, and when.

    ``retryable`` is the error's own verdict (``worker.errors.is_retryable``: a cairn error
    that no retry can fix says so). ``error_types`` are the names of the error's class and
    its bases, so a policy may list a base class in ``non_retryable``.
    """
    if attempt >= policy.max_attempts or not retryable:
        return RetryDecision(None)
    if set(policy.non_retryable).intersection(error_types):
        return RetryDecision(None)
    return RetryDecision(now + timedelta(seconds=backoff_delay(policy, attempt, rand)))


#: Longest wait before a released attempt is tried again.
RELEASE_BACKOFF_MAX_S = 60.0


def decide_release(
    releases: int, max_releases: int, now: datetime, rand: random.Random | None = None
) -> RetryDecision:
    """When an attempt stopped by a server fault runs again; None once ``releases`` (the
    attempts released before this one) reached ``max_releases``: the setup is broken."""
    if releases + 1 > max_releases:
        return RetryDecision(None)
    delay = min(RELEASE_BACKOFF_MAX_S, 0.5 * 2 ** min(releases, 16))
    return RetryDecision(now + timedelta(seconds=(rand or random).uniform(delay / 2, delay)))
