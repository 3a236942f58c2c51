"""The one place that sends Celery messages, by task name, after the commit.

A message carries only ``(step_id, attempt)``; its Celery task id is derived from them,
so the same attempt sent twice is recognisable, and the claim drops the second one.
A send that fails is logged, not raised: the row is committed, and the reconciler sends
again any queued step nobody claimed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from worker import tracing
from worker.app import URGENT, wire_priority
from worker.machine.messages import StepMessage
from worker.wire import EXECUTE_STEP, REQUEUE_STEP

log = logging.getLogger("cairn.dispatch")


def task_id(step_id: uuid.UUID, attempt: int) -> str:
    """The Celery task id of one attempt of one step."""
    return f"{step_id}:{attempt}"


class Dispatcher:
    """Sends step messages through a Celery app."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._broker_url = str(app.conf.broker_url)

    def send(self, messages: Iterable[StepMessage], *, urgent: bool = False) -> int:
        """Send ``execute_step`` for each message; return how many left this process.

        ``urgent`` messages (steps of crashed attempts, queued again by the reaper) go
        before fresh work in their queue, so recovery does not wait behind a long queue.
        """
        messages = list(messages)
        if urgent and messages:
            # A broker restarted empty has forgotten the queues' bindings: declare them
            # again, or the first recovery messages after it would be undeliverable.
            try:
                self.declare_queues(m.queue for m in messages)
            except Exception as exc:  # the send below logs the broker's state per message
                log.warning("could not declare queues: %s", exc, extra={"action": "dispatch"})
        sent = 0
        # The sender's trace context rides in the headers: the attempt's span is its child.
        headers = tracing.current_context()
        for m in messages:
            priority = URGENT if urgent else m.priority
            try:
                self._app.send_task(
                    EXECUTE_STEP,
                    kwargs={"step_id": str(m.step_id), "attempt": m.attempt},
                    task_id=task_id(m.step_id, m.attempt),
                    queue=m.queue,
                    priority=wire_priority(self._broker_url, priority),
                    shadow=f"cairn.step {m.key} ({m.task})",
                    headers=headers,
                )
                sent += 1
            except Exception as exc:  # kombu raises several types for a broker that is down
                log.warning(
                    "could not send step %s: %s; the reconciler will send it again",
                    m.key,
                    exc,
                    extra={
                        "action": "dispatch_failed",
                        "run_id": m.run_id,
                        "step_id": m.step_id,
                        "attempt": m.attempt,
                    },
                )
        return sent

    def send_task(self, name: str, kwargs: dict[str, Any], queue: str | None = None) -> None:
        """Send any task by name (a notification hook's); raises if the broker refuses."""
        self._app.send_task(name, kwargs=kwargs, queue=queue)

    def send_requeue(self, step_id: uuid.UUID, attempt: int, eta: datetime, queue: str) -> None:
        """Ask for a retrying step to be queued again at ``eta`` (the reconciler is the
        fallback if this message is lost)."""
        try:
            self._app.send_task(
                REQUEUE_STEP,
                kwargs={"step_id": str(step_id), "attempt": attempt},
                task_id=f"requeue:{task_id(step_id, attempt)}",
                queue=queue,
                eta=eta,
            )
        except Exception as exc:
            log.warning(
                "could not schedule the retry of step %s: %s",
                step_id,
                exc,
                extra={"action": "dispatch_failed", "step_id": step_id},
            )

    def busy_queues(self, names: Iterable[str]) -> set[str]:
        """The queues among ``names`` where the broker holds messages waiting.

        A queue the broker cannot count (missing, or the broker is away) counts as idle:
        the reconciler then sends its stale steps again, which is always safe.
        """
        busy = set()
        try:
            with self._app.connection_for_write() as conn:
                channel: Any = conn.default_channel  # kombu's channels are untyped
                for name in set(names):
                    try:
                        ok = channel.queue_declare(queue=name, passive=True)
                    except Exception:  # noqa: S112 - kombu raises per transport; idle then
                        continue
                    if ok.message_count:
                        busy.add(name)
        except Exception as exc:  # the broker is away: nothing is busy, all is resent
            log.warning("could not count queued messages: %s", exc, extra={"action": "reconcile"})
        return busy

    def declare_queues(self, names: Iterable[str]) -> None:
        """Declare queues and their bindings again (a flushed Redis forgets them)."""
        with self._app.connection_for_write() as conn:
            channel = conn.default_channel
            for name in set(names):
                Queue(name, Exchange(name, type="direct"), routing_key=name)(channel).declare()
