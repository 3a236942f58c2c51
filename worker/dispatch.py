"""The one place that sends Celery messages, by task name, after the commit.

A message carries only ``(step_id, attempt)``; its Celery task id is derived from them,
so the same attempt sent twice is recognisable, and the claim drops the second one.
A send that fails is logged, not raised: the row is committed, and the reconciler sends
again any queued step nobody claimed.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from worker import tracing
from worker.app import URGENT, wire_priority
from worker.machine.messages import StepMessage, Taken
from worker.wire import EXECUTE_STEP, REQUEUE_STEP

log = logging.getLogger("cairn.dispatch")


def task_id(step_id: uuid.UUID, attempt: int) -> str:
    """The Celery task id of one attempt of one step."""
    return f"{step_id}:{attempt}"


#: The Redis key of :meth:`Dispatcher.broker_epoch`.
EPOCH_KEY = "cairn:broker-epoch"


def utcnow_iso() -> str:
    """Now, in UTC, as ISO 8601 (what the epoch mark holds)."""
    return datetime.now(UTC).isoformat()


def parse_task_id(value: str) -> tuple[uuid.UUID, int] | None:
    """The step and attempt of a task id made by :func:`task_id`; None for any other."""
    step, sep, attempt = value.rpartition(":")
    if not sep or not attempt.isdigit():
        return None
    try:
        return uuid.UUID(step), int(attempt)
    except ValueError:
        return None


def _headers(raw: bytes | str | None) -> dict[str, Any]:
    """The headers of a message as kombu's Redis transport keeps it aside (JSON of
    ``[message, exchange, routing key]``); empty when it is not that."""
    if raw is None:
        return {}
    try:
        message = json.loads(raw)[0]
        headers = message.get("headers") or {}
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return {}
    return headers if isinstance(headers, dict) else {}


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
        if not messages:  # a step continued inline, or a join still waiting: nothing to send
            return 0
        if urgent:
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

    def stranded(self, older_than_s: float, limit: int = 1000) -> list[Taken]:
        """Step messages a worker took from Redis over ``older_than_s`` ago and has not
        acknowledged: that worker may have been killed holding them.

        Redis keeps a taken message aside until it is acknowledged, giving it back only
        after the visibility timeout (an hour by default), so in a busy queue the
        reconciler would leave such a step waiting. Sending it again is safe: if the
        worker is alive after all, the claim drops one of the two. Other brokers give a
        dead consumer's messages back at once: none there.
        """
        try:
            with self._app.connection_for_write() as conn:
                channel: Any = conn.default_channel  # kombu's channels are untyped
                index = getattr(channel, "unacked_index_key", None)
                if index is None:
                    return []
                client = channel.client
                taken = client.zrange(
                    index,
                    time.time() - older_than_s,
                    0,
                    desc=True,
                    byscore=True,
                    offset=0,
                    num=limit,
                    withscores=True,
                )
                tags = [tag for tag, _ in taken]
                payloads = client.hmget(channel.unacked_key, tags) if tags else []
        except Exception as exc:  # the broker is away: the busy rule applies as before
            log.warning("could not read taken messages: %s", exc, extra={"action": "reconcile"})
            return []
        found = []
        for (_, score), raw in zip(taken, payloads, strict=True):
            headers = _headers(raw)
            if headers.get("task") != EXECUTE_STEP:
                continue  # a retry's message is held until its time on purpose
            attempt = parse_task_id(str(headers.get("id", "")))
            if attempt is not None:
                found.append(Taken(*attempt, datetime.fromtimestamp(float(score), UTC)))
        return found

    def broker_epoch(self) -> datetime | None:
        """Since when Redis has held the messages it holds: a mark cairn leaves in it,
        stamped by the first to ask while it is missing (a worker coming up, the
        reconciler's next tick: Redis is new, restarted empty, or flushed). A step
        dispatched before then has lost its message, however busy its queue is now. A
        stamp is never too early (the mark was missing when it was made), only late,
        which sends a message again that was not lost. None with another broker, or when
        Redis cannot be asked.
        """
        try:
            with self._app.connection_for_write() as conn:
                channel: Any = conn.default_channel  # kombu's channels are untyped
                if getattr(channel, "unacked_index_key", None) is None:
                    return None  # not Redis: a broker that keeps its messages
                client = channel.client
                client.set(EPOCH_KEY, utcnow_iso(), nx=True)
                stamp = client.get(EPOCH_KEY)
        except Exception as exc:  # away: the busy rule applies as before
            log.warning("could not read the broker's epoch: %s", exc, extra={"action": "reconcile"})
            return None
        try:
            return datetime.fromisoformat(stamp.decode() if isinstance(stamp, bytes) else stamp)
        except (TypeError, ValueError, AttributeError):
            return None

    def declare_queues(self, names: Iterable[str]) -> None:
        """Declare queues and their bindings again (a flushed Redis forgets them)."""
        with self._app.connection_for_write() as conn:
            channel = conn.default_channel
            for name in set(names):
                Queue(name, Exchange(name, type="direct"), routing_key=name)(channel).declare()
