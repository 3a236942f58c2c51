"""Retry policy: pure decisions about a failed attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.definitions.spec import RetryPolicy

#: Error types that no retry can fix, whatever the policy says.
ALWAYS_FATAL = frozenset(
    {
        "DefinitionError",
        "UnknownStep",
        "PayloadTooLarge",
        "NonRetryableError",
        "InvalidArtifactName",
        "ArtifactIntegrityError",  # a tampered object stays tampered
        "ArtifactMissing",  # a deleted object does not come back
    }
)


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
) -> RetryDecision:
    """Whether failed ``attempt`` is retried, and when.

    ``error_types`` are the names of the error's class and its bases, so a policy may list
    a base class in ``non_retryable``.
    """
    fatal = ALWAYS_FATAL | set(policy.non_retryable)
    if attempt >= policy.max_attempts or fatal.intersection(error_types):
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
    delay = min(RELEASE_BACKOFF_MAX_S, 0.5 * 2**releases)
    return RetryDecision(now + timedelta(seconds=(rand or random).uniform(delay / 2, delay)))
