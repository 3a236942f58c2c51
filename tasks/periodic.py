"""Beat's maintenance tasks, registered under their wire names; the work is in
``worker/maintenance.py``."""

from __future__ import annotations

from celery import Celery

from worker import maintenance, wire
from worker.runtime import Runtime


def register(app: Celery, runtime: Runtime) -> None:
    """Register the periodic tasks on ``app`` (their schedule is in worker.app)."""

    @app.task(name=wire.REAP, ignore_result=True)
    def reap() -> None:
        maintenance.reap(runtime)

    @app.task(name=wire.RECONCILE, ignore_result=True)
    def reconcile() -> None:
        maintenance.reconcile(runtime)

    @app.task(name=wire.RETENTION, ignore_result=True)
    def retention() -> None:
        maintenance.retention(runtime)

    @app.task(name=wire.TICK_SCHEDULES, ignore_result=True)
    def tick_schedules() -> None:
        maintenance.tick_schedules(runtime)
