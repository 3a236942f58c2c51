"""cairn's beat scheduler: Celery's in-memory scheduler (no shelve file, so no pickle)
that runs cairn's own maintenance in the beat process instead of sending it as messages.

The reaper and the reconciler are what recovers a run after a crash or a lost message;
sent through the broker they would wait behind a long queue, or stand still while the
broker is away or has just restarted empty (measured: ~100 s after a Redis restart).
Run here, they need only the database. Two beats may run: every maintenance verb is a
guarded statement that re-checks its condition. Other periodic tasks are sent as usual.
"""

from __future__ import annotations

from typing import Any

from celery import beat

from worker import metrics, wire
from worker.settings import get_settings

#: Periodic tasks beat runs itself rather than sending (retention, which may list a whole
#: bucket, goes to a worker so it never holds up the reaper).
IN_PROCESS = frozenset({wire.REAP, wire.RECONCILE, wire.TICK_SCHEDULES, wire.TICK_WAITS})


class Scheduler(beat.Scheduler):
    """Runs cairn's maintenance in process; sends everything else."""

    def setup_schedule(self) -> None:
        """Celery's schedule; and ``/metrics`` of the maintenance done here, when
        ``CAIRN_BEAT_METRICS_PORT`` asks for it."""
        super().setup_schedule()
        settings = get_settings()
        if settings.beat_metrics_port is not None:
            metrics.serve(settings.beat_metrics_port, settings.metrics_host)

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        """Run a cairn maintenance entry here (its errors are logged by beat); send others."""
        if entry.task not in IN_PROCESS:
            return super().apply_async(entry, producer, advance, **kwargs)
        if advance:
            entry = self.reserve(entry)
        self.app.tasks[entry.task].run()
        return None
