"""Beat's maintenance work: what the periodic tasks do. Each is safe when two beats run it
at once (every change is a guarded statement that re-checks its condition).

``tasks/periodic.py`` only registers these under their wire names; the verbs they apply
are in ``worker/machine/`` (recovery, retention, schedules), one transaction each.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from db.session import run_transaction
from db.types import utcnow
from worker import metrics, notify
from worker.apikeys import delete_expired_sessions
from worker.errors import CairnError
from worker.machine.approvals import expire_due
from worker.machine.concurrency import wake_all
from worker.machine.recovery import (
    mark_silent_workers,
    reap_expired,
    redispatch_stale,
    requeue_retrying,
    stale_queues,
)
from worker.machine.retention import expired_artifacts, mark_deleted, purge_runs, referenced
from worker.machine.schedules import Fire, advance_schedule, due_fires
from worker.machine.start import StartRequest, start_run
from worker.machine.waits import ended_children, match_stray_signals
from worker.runtime import Runtime

log = logging.getLogger("cairn.recovery")
#: Batches of ended runs one retention tick deletes at most; the rest wait for the next.
RUN_BATCHES_PER_TICK = 20


def reap(runtime: Runtime) -> None:
    """Steps whose lease expired: queued again (sent before fresh work), or failed."""
    settings = runtime.settings
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
    metrics.recovered("reaper_requeued", len(reaped.requeued))
    metrics.recovered("reaper_failed", reaped.failed)
    metrics.recovered("reaper_cancelled", reaped.cancelled)
    runtime.dispatcher.send(reaped.requeued, urgent=True)


def reconcile(runtime: Runtime) -> None:
    """Lost messages sent again; retrying steps whose backoff is over queued."""
    settings = runtime.settings
    window = settings.redispatch_window_s
    # Asked at every tick, so the mark is back within one tick of Redis losing it.
    epoch = runtime.dispatcher.broker_epoch()
    # What is sent again now is dated no earlier than the epoch (another beat's clock may
    # have stamped it), or the next tick would find it lost again.
    now = utcnow() if epoch is None else max(utcnow(), epoch)
    queues = run_transaction(runtime.engine, lambda s: stale_queues(s, now, window))
    busy = runtime.dispatcher.busy_queues(queues) if queues else set()
    # In a busy queue, a step waits its turn; not one whose message a dead worker holds,
    # nor one sent before Redis lost its messages.
    stranded = runtime.dispatcher.stranded(window) if busy else []
    stale = run_transaction(
        runtime.engine,
        lambda s: redispatch_stale(
            s,
            now,
            window,
            busy_queues=busy,
            busy_after_s=settings.busy_redispatch_after_s,
            stranded=stranded,
            lost_before=epoch,
        ),
    )
    due = run_transaction(runtime.engine, lambda s: requeue_retrying(s, now))
    if stale:
        log.warning(
            "reconciler: sending %d unclaimed steps again",
            len(stale),
            extra={"action": "reconcile"},
        )
        runtime.dispatcher.declare_queues(m.queue for m in stale)
    metrics.recovered("reconciler_redispatched", len(stale))
    metrics.recovered("reconciler_requeued_due", len(due))
    # A step that ran before (a crashed attempt the reaper queued again, a retry) goes
    # before fresh work, as the reaper sent it: its lost message must not wait behind a
    # backlog. Fresh work sent again keeps its own priority, or a backlog sent again
    # would crowd the others out.
    runtime.dispatcher.send([m for m in stale if m.attempt > 1], urgent=True)
    runtime.dispatcher.send([m for m in stale if m.attempt <= 1])
    runtime.dispatcher.send(due)


def tick_waits(runtime: Runtime) -> None:
    """Waiting steps whose time came are queued (sleeps over, timeouts and approval
    policies applied, signals kept for them delivered, child runs ended, throttled steps
    given the slots freed); then the notices are sent."""
    now = utcnow()
    due = run_transaction(runtime.engine, lambda s: expire_due(s, now))
    stray = run_transaction(runtime.engine, lambda s: match_stray_signals(s, now))
    children = run_transaction(runtime.engine, lambda s: ended_children(s, now))
    # Slots freed by failures, waits and reaped leases (a completion frees its own).
    unthrottled = run_transaction(runtime.engine, lambda s: wake_all(s, now))
    woken = due + stray + children + unthrottled
    if woken:
        log.info("timer: %d waiting steps queued", len(woken), extra={"action": "tick_waits"})
    runtime.dispatcher.send(woken)
    notify.send_pending(runtime)


def retention(runtime: Runtime) -> None:
    """Ended runs past their retention, expired artifacts and orphan objects, and
    expired dashboard sessions deleted."""
    purge_old_runs(runtime)
    run_retention(runtime)
    purge_expired_sessions(runtime)


def purge_expired_sessions(runtime: Runtime) -> int:
    """Delete the dashboard sessions that have expired; return how many."""
    now = utcnow()
    deleted = run_transaction(runtime.engine, lambda s: delete_expired_sessions(s, now))
    if deleted:
        log.info(
            "retention: %d expired dashboard sessions deleted",
            deleted,
            extra={"action": "retention"},
        )
    return deleted


def tick_schedules(runtime: Runtime) -> None:
    """Due cron slots start their runs (one run per slot, by idempotency key)."""
    settings = runtime.settings
    now = utcnow()
    fires = run_transaction(runtime.engine, lambda s: due_fires(s, now))
    last_of: dict[uuid.UUID, Fire] = {}
    for fire in fires:
        request = StartRequest(
            tenant=fire.tenant,
            workflow=fire.workflow,
            version=fire.version,
            inputs=fire.inputs,
            idempotency_key=fire.idempotency_key,
            project=fire.project,
        )
        try:
            started = start_run(runtime.engine, settings, request, runtime.registry.names() or None)
        except CairnError as exc:
            log.error(
                "schedule %s could not start %s: %s",
                fire.schedule_id,
                fire.workflow,
                exc,
                extra={"action": "fire_schedule"},
            )
            continue
        runtime.dispatcher.send(started.messages)
        last_of[fire.schedule_id] = fire
    for fire in last_of.values():
        _advance(runtime, fire, now)


def purge_old_runs(runtime: Runtime, max_batches: int = RUN_BATCHES_PER_TICK) -> int:
    """Delete runs that ended more than ``run_retention_days`` ago (with every row they
    own and their objects); return how many. Nothing when the setting is off."""
    days = runtime.settings.run_retention_days
    if days is None:
        return 0
    now = utcnow()
    try:
        cutoff = now - timedelta(days=days)
    except OverflowError:  # longer than the calendar: nothing is that old
        return 0
    deleted = purge_runs(runtime.engine, runtime.store, cutoff, max_batches=max_batches)
    if deleted:
        log.info(
            "retention: %d runs that ended before %s deleted",
            deleted,
            cutoff.isoformat(timespec="seconds"),
            extra={"action": "delete_run"},
        )
    return deleted


def run_retention(runtime: Runtime) -> tuple[int, int]:
    """Delete expired artifacts and orphan objects; return (expired, orphans) deleted."""
    settings, store, now = runtime.settings, runtime.store, utcnow()
    expired: list[tuple[uuid.UUID, uuid.UUID, str]] = []
    if settings.artifact_retention_days is not None:
        cutoff = now - timedelta(days=settings.artifact_retention_days)
        expired = run_transaction(runtime.engine, lambda s: expired_artifacts(s, cutoff))
        for _, _, key in expired:
            store.delete(key)
        run_transaction(runtime.engine, lambda s: mark_deleted(s, expired, now))
    grace = now - timedelta(seconds=settings.orphan_grace_s)
    old = [key for key, modified in store.list_objects() if modified < grace]
    known = run_transaction(runtime.engine, lambda s: referenced(s, old))
    orphans = [key for key in old if key not in known]
    for key in orphans:
        store.delete(key)
    if expired or orphans:
        log.info(
            "retention: %d expired artifacts, %d orphan objects deleted",
            len(expired),
            len(orphans),
            extra={"action": "retention"},
        )
    return len(expired), len(orphans)


def _advance(runtime: Runtime, fire: Fire, now: datetime) -> None:
    run_transaction(runtime.engine, lambda s: advance_schedule(s, fire, now))
