"""Bare Celery, configured exactly like cairn's app (same broker, serializer, acks, prefetch),
for the baseline: ``celery -A bench.baseline_app worker -Q baseline``.

Completion is signalled with a Redis RPUSH, not a result backend, so the baseline is not
charged for one.
"""

from __future__ import annotations

import os
import time

import redis

from worker.app import make_celery
from worker.settings import get_settings

DONE_KEY = "bench:done"
settings = get_settings()
app = make_celery(settings)
app.conf.task_default_queue = "baseline"
_redis = redis.Redis.from_url(settings.broker_url)


@app.task(name="bench.baseline_noop", ignore_result=True)
def noop(signal: bool = False) -> None:
    """A trivial task; the last of a chain (or each of a batch) signals completion."""
    if signal:
        _redis.rpush(DONE_KEY, os.getpid())


@app.task(name="bench.baseline_sleep", ignore_result=True)
def sleep(seconds: float = 30.0) -> None:
    """A long task to kill a worker under; it signals each start."""
    _redis.rpush("bench:started", time.time())
    time.sleep(seconds)
