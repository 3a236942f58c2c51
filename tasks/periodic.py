"""Beat's maintenance tasks. Each is safe when two beats run it at once."""

from __future__ import annotations

import logging

from celery import Celery

from db.session import run_transaction
from db.types import utcnow
from worker.engine.recovery import (
    mark_silent_workers,
    reap_expired,
    redispatch_stale,
    requeue_retrying,
)
from worker.runtime import Runtime

log = logging.getLogger("cairn.recovery")


def register(app: Celery, runtime: Runtime) -> None:
    """Register the periodic tasks on ``app`` (their schedule is in worker.app)."""
    settings = runtime.settings

    @app.task(name="cairn.reap", ignore_result=True)
    def reap() -> None:
        now = utcnow()
        reaped = run_transaction(
            runtime.engine, lambda s: reap_expired(s, now, settings.crash_max_attempts)
        )
        silent = run_transaction(
            runtime.engine, lambda s: mark_silent_workers(s, now, settings.lease_s * 2)
        )
        if reaped.requeued or reaped.failed or reaped.cancelled or silent:
            log.warning(
                "reaper: %d requeued, %d failed, %d cancelled, %d silent workers",
                len(reaped.requeued),
                reaped.failed,
                reaped.cancelled,
                silent,
                extra={"action": "reap"},
            )
        runtime.dispatcher.send(reaped.requeued)

    @app.task(name="cairn.reconcile", ignore_result=True)
    def reconcile() -> None:
        now = utcnow()
        stale = run_transaction(
            runtime.engine, lambda s: redispatch_stale(s, now, settings.redispatch_after_s)
        )
        due = run_transaction(runtime.engine, lambda s: requeue_retrying(s, now))
        if stale:
            log.warning(
                "reconciler: sending %d unclaimed steps again",
                len(stale),
                extra={"action": "reconcile"},
            )
            runtime.dispatcher.declare_queues(m.queue for m in stale)
        runtime.dispatcher.send(stale + due)
