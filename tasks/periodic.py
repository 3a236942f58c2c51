"""Beat's maintenance tasks, registered under their wire names; the work is in
``worker/maintenance.py``."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from worker import maintenance, notify, wire
from worker.errors import HookFailed
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

    @app.task(name=wire.TICK_WAITS, ignore_result=True)
    def tick_waits() -> None:
        maintenance.tick_waits(runtime)

    @app.task(name=wire.NOTIFY, bind=True, ignore_result=True, max_retries=notify.MAX_TRIES)
    def send_notice(self: Task[Any, None], event: str, data: dict[str, Any]) -> None:
        try:
            notify.post(runtime.settings, event, data)
        except HookFailed as exc:
            raise self.retry(countdown=notify.backoff_s(self.request.retries)) from exc
