"""The heartbeat: a thread that extends a running attempt's lease every lease/3 seconds.

It tells the step when its run was cancelled, and when the lease was lost (another
worker took the step over), in which case the attempt must stop. Past the step's timeout
it stops extending, so even a hung step is reaped.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.session import run_transaction
from db.types import utcnow
from worker.attempt import Attempt
from worker.errors import ServerUnavailable, StaleAttempt
from worker.machine.lease import Fence, extend_lease

log = logging.getLogger("cairn.heartbeat")


class Heartbeat:
    """Extends one attempt's lease until stopped."""

    def __init__(
        self,
        engine: Engine,
        fence: Fence,
        attempt: Attempt,
        lease_s: float,
        timeout_s: float | None,
    ) -> None:
        self._engine = engine
        self._fence = fence
        self._attempt = attempt
        self._lease_s = lease_s
        self._deadline = time.monotonic() + timeout_s if timeout_s else None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"cairn-heartbeat-{fence.step_id}", daemon=True
        )

    def start(self) -> Heartbeat:
        """Start beating."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self._lease_s)

    def _run(self) -> None:
        interval = self._lease_s / 3
        while not self._stop.wait(interval):
            if self._deadline is not None and time.monotonic() > self._deadline:
                self._attempt.timed_out = True
                log.warning(
                    "step over its timeout; no longer extending its lease",
                    extra={
                        "action": "timeout_step",
                        "step_id": self._fence.step_id,
                        "attempt": self._fence.attempt,
                    },
                )
                return
            try:
                # Retried only briefly: the next beat is the next try.
                cancel = run_transaction(
                    self._engine,
                    lambda session: extend_lease(session, self._fence, self._lease_s, utcnow()),
                    retry_for_s=interval / 2,
                )
            except StaleAttempt:
                self._attempt.lost = True
                log.warning(
                    "lease lost; the attempt will stop",
                    extra={
                        "action": "lose_lease",
                        "step_id": self._fence.step_id,
                        "attempt": self._fence.attempt,
                    },
                )
                return
            except (SQLAlchemyError, ServerUnavailable) as exc:
                # The database is down or busy: keep trying; if it stays down the lease
                # expires and the reaper gives the step to a healthy worker.
                log.warning(
                    "heartbeat failed: %s",
                    type(exc).__name__,
                    extra={"action": "heartbeat_failed", "step_id": self._fence.step_id},
                )
                continue
            if cancel:
                self._attempt.cancelled = True
