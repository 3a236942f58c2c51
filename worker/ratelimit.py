"""Rate limits of paid APIs: token buckets shared by every worker, in Redis.

Each named limit (``CAIRN_RATE_LIMITS``) is one bucket per dimension (requests, tokens;
per second, per minute), holding one period's worth. ``acquire`` takes from every bucket
of a limit at once, or from none: one Lua script, atomic in Redis, timed by Redis' own
clock, so workers on hosts with skewed clocks share one notion of "now". When a bucket is
short, the script says how long until it has enough, and the caller sleeps that long (in
slices, so a cancelled run or a lost lease still stops the step) and tries again.

Why Redis and not the database: a limit of hundreds of requests a second would be as many
row updates a second on one hot row. What a Redis restart does: the buckets are gone and
start full again, so just after a restart the limits may admit up to one period's worth
at once (a burst of one bucket), then hold again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from worker.errors import ConfigurationError, DefinitionError
from worker.settings import RateLimit, Settings

#: KEYS: one bucket per dimension. ARGV: triples of (refill per s, capacity, cost).
#: Returns 0 when every bucket had enough (all were taken from), else the milliseconds
#: until the emptiest has enough (none was taken from).
_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[i * 3 - 2])
  local capacity = tonumber(ARGV[i * 3 - 1])
  local cost = tonumber(ARGV[i * 3])
  local state = redis.call('HMGET', key, 'level', 'at')
  local level = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  level = math.min(capacity, level + (now - at) * rate)
  levels[i] = level
  if level < cost then
    wait = math.max(wait, (cost - level) / rate)
  end
end
if wait > 0 then
  return math.ceil(wait * 1000)
end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[i * 3 - 2])
  local capacity = tonumber(ARGV[i * 3 - 1])
  local cost = tonumber(ARGV[i * 3])
  redis.call('HSET', key, 'level', levels[i] - cost, 'at', now)
  redis.call('EXPIRE', key, math.ceil(capacity / rate) + 60)
end
return 0
"""


class RateLimiter:
    """The named limits of ``settings``, taken from their buckets in Redis."""

    def __init__(self, settings: Settings) -> None:
        self.limits = settings.rate_limits
        url = settings.rate_limit_url or settings.broker_url
        self._url = url
        self._client: redis.Redis | None = None
        self._script: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            if not self._url.startswith(("redis://", "rediss://")):
                raise ConfigurationError(
                    "rate limits keep their buckets in Redis: set CAIRN_RATE_LIMIT_URL to a "
                    "redis:// URL (the broker is not Redis)"
                )
            self._client = redis.Redis.from_url(self._url)
            self._script = self._client.register_script(_ACQUIRE)
        return self._script

    def limit(self, name: str) -> RateLimit:
        """The limit called ``name``; :class:`DefinitionError` naming the known ones."""
        found = self.limits.get(name)
        if found is None:
            known = ", ".join(sorted(self.limits)) or "none are set"
            raise DefinitionError(
                "rate_limit", f"no rate limit {name!r} in CAIRN_RATE_LIMITS ({known})"
            )
        return found

    def try_acquire(self, name: str, tokens: int = 0) -> float:
        """Take one request (and ``tokens``) from the limit now: 0.0, or the seconds to wait
        before trying again (nothing was taken)."""
        keys, args = [], []
        for dimension, rate, capacity in self.limit(name).buckets():
            cost = 1 if dimension.startswith("requests") else tokens
            if cost > capacity:
                raise DefinitionError(
                    "tokens", f"{cost} is more than rate limit {name!r} ever allows ({dimension})"
                )
            keys.append(f"cairn:ratelimit:{name}:{dimension}")
            args += [rate, capacity, cost]
        if not keys:
            return 0.0
        waited_ms = self._redis()(keys=keys, args=args)
        return float(waited_ms) / 1000

    def acquire(
        self, name: str, tokens: int = 0, check: Callable[[], None] = lambda: None
    ) -> float:
        """Block until the limit admits one request (and ``tokens``); the seconds waited.
        ``check`` runs between tries (it raises to stop the wait)."""
        started = time.monotonic()
        while True:
            wait = self.try_acquire(name, tokens)
            if wait <= 0:
                return time.monotonic() - started
            check()
            time.sleep(min(wait, 1.0))
