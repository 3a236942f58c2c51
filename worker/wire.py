"""The names on the wire: Celery task names other services and beat send by.

They are a public contract (a service in another language sends ``cairn.start_run`` by
name), so they live in one place and never change meaning.
"""

from __future__ import annotations

#: Run one attempt of one step: kwargs ``step_id``, ``attempt``.
EXECUTE_STEP = "cairn.execute_step"
#: Queue a retrying step whose backoff is over: kwargs ``step_id``, ``attempt``.
REQUEUE_STEP = "cairn.requeue_step"
#: Start a run from any language: kwargs of the start request (see tasks/start.py).
START_RUN = "cairn.start_run"
#: Beat's maintenance: expired leases, lost messages, retention, cron slots.
REAP = "cairn.reap"
RECONCILE = "cairn.reconcile"
RETENTION = "cairn.retention"
TICK_SCHEDULES = "cairn.tick_schedules"
#: Beat's timer of waiting steps: sleeps over, timeouts passed, signals matched, notices.
TICK_WAITS = "cairn.tick_waits"
#: Call the webhook of CAIRN_NOTIFY_HOOK: kwargs ``event``, ``data``.
NOTIFY = "cairn.notify"
