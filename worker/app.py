"""The Celery instance, built from Settings. It defines no tasks (``tasks/`` does).

Why each setting is what it is:

- JSON only, in and out: no pickle is ever accepted from the broker.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged after the
  step ran, so a worker that dies mid-step does not silently swallow it.
- ``worker_prefetch_multiplier=1``: a worker holds one message per process, so a long
  step does not sit on messages other workers could run.
- Results are ignored: the database is the result store.
- Worker events on, for Flower, which shows a step once a worker has received it;
  ``CAIRN_TASK_SENT_EVENTS=true`` shows it from the moment it is sent, at the cost of
  one more broker write per step.
- ``visibility_timeout`` stays at one hour. Recovery never waits for it: a dead worker's
  step is re-queued by the reaper when its lease expires (within 2 x lease). Redis'
  redelivery after the timeout only produces a duplicate message, which the claim drops.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery

from worker import wire
from worker.settings import Settings

VISIBILITY_TIMEOUT_S = 3600
#: cairn's priorities run 0 (lowest) to 9 (highest), as AMQP's do.
URGENT = 9


def wire_priority(broker_url: str, priority: int) -> int:
    """The priority to put on a message for ``broker_url``.

    Redis emulates priorities with one list per level, 0 being served first: the reverse
    of cairn's (and AMQP's) 9-is-highest.
    """
    return 9 - priority if broker_url.startswith(("redis", "rediss")) else priority


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for cairn from ``settings``."""
    app = Celery("cairn", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        # Off by default: a task-sent event is one more broker write for every step.
        task_send_sent_event=settings.task_sent_events,
        broker_connection_retry_on_startup=True,
        # A step keeps running through a broker hiccup; its fenced commit decides.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_default_queue=settings.default_queue,
        task_create_missing_queues=True,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
        },
        worker_hijack_root_logger=False,
        enable_utc=True,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
        beat_max_loop_interval=1,
    )
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """The periodic maintenance tasks and how often they run.

    | task            | every                                | does                          |
    |-----------------|--------------------------------------|-------------------------------|
    | cairn.reap      | recovery_interval_s (<= lease / 2)   | expired leases -> re-queued   |
    | cairn.reconcile | recovery_interval_s                  | lost messages sent again,     |
    |                 |                                      | retrying steps due -> queued  |
    | cairn.retention | retention_interval_s (1 h)           | old artifacts, orphan objects |
    | cairn.tick_     | schedule_tick_s (1 s)                | due cron slots -> runs        |
    | schedules       |                                      |                               |
    | cairn.tick_     | schedule_tick_s (1 s)                | sleeps over, timeouts passed, |
    | waits           |                                      | signals matched -> queued;    |
    |                 |                                      | notifications sent            |
    """
    every = timedelta(seconds=settings.recovery_interval_s)
    # cairn's beat (tasks/beat.py) runs these itself; should a plain Celery scheduler send
    # them, they jump the queue rather than wait behind fresh work.
    options = {
        "queue": settings.default_queue,
        "expires": settings.recovery_interval_s * 4,
        "priority": wire_priority(settings.broker_url, URGENT),
    }
    tick = timedelta(seconds=settings.schedule_tick_s)
    tick_options = {"queue": settings.default_queue, "expires": settings.schedule_tick_s * 4}
    return {
        wire.REAP: {"task": wire.REAP, "schedule": every, "options": options},
        wire.RECONCILE: {"task": wire.RECONCILE, "schedule": every, "options": options},
        wire.RETENTION: {
            "task": wire.RETENTION,
            "schedule": timedelta(seconds=settings.retention_interval_s),
            "options": {"queue": settings.default_queue},
        },
        wire.TICK_SCHEDULES: {
            "task": wire.TICK_SCHEDULES,
            "schedule": tick,
            "options": tick_options,
        },
        wire.TICK_WAITS: {"task": wire.TICK_WAITS, "schedule": tick, "options": tick_options},
    }
