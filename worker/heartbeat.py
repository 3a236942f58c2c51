"""The heartbeat: extends a running attempt's lease every lease/3 seconds.

It tells the step when its run was cancelled, and when the lease was lost (another
worker took the step over), in which case the attempt must stop. Past the step's timeout
it stops extending, so even a hung step is reaped.

Each attempt's heartbeat loop runs on a thread of a small per-process pool: starting a
thread costs about half a millisecond, as much as a step's claim, and a chain continued
inline starts one heartbeat per step.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.session import run_transaction
from db.types import utcnow
from worker.attempt import Attempt
from worker.errors import ServerUnavailable, StaleAttempt
from worker.machine.lease import Fence, extend_lease

log = logging.getLogger("cairn.heartbeat")


class _Threads:
    """Daemon threads that run submitted loops; a new thread only when none is idle."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every thread: a forked child (Celery's prefork pool) has none of its
        parent's threads."""
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on an idle thread, or on a new one."""
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1  # reserved: an idle thread takes this job
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._serve, name="cairn-heartbeat", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # a loop that dies must not take its thread with it
                log.exception("heartbeat loop failed", extra={"action": "heartbeat_failed"})
            with self._lock:
                self._idle += 1


_threads = _Threads()
os.register_at_fork(after_in_child=_threads.reset)


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
        #: Set while no beat is in flight; ``stop`` waits for the one that is.
        self._quiet = threading.Event()
        self._quiet.set()

    def start(self) -> Heartbeat:
        """Start beating."""
        _threads.submit(self._run)
        return self

    def stop(self) -> None:
        """Stop beating, and wait for a beat in flight so none lands after this returns."""
        self._stop.set()
        self._quiet.wait(timeout=self._lease_s)

    def _run(self) -> None:
        interval = self._lease_s / 3
        while not self._stop.wait(interval):
            self._quiet.clear()
            try:
                if self._stop.is_set():
                    return
                if not self._beat(interval):
                    return
            finally:
                self._quiet.set()

    def _beat(self, interval: float) -> bool:
        """One beat; False when the loop must end (timeout passed, lease lost)."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._attempt.timed_out = True
            self._stopping("step over its timeout; no longer extending its lease", "timeout_step")
            return False
        try:
            # Retried only briefly: the next beat is the next try.
            cancel = run_transaction(
                self._engine,
                lambda session: extend_lease(session, self._fence, self._lease_s, utcnow()),
                retry_for_s=interval / 2,
            )
        except StaleAttempt:
            self._attempt.lost = True
            self._stopping("lease lost; the attempt will stop", "lose_lease")
            return False
        except (SQLAlchemyError, ServerUnavailable) as exc:
            # The database is down or busy: keep trying; if it stays down the lease
            # expires and the reaper gives the step to a healthy worker.
            log.warning(
                "heartbeat failed: %s",
                type(exc).__name__,
                extra={"action": "heartbeat_failed", "step_id": self._fence.step_id},
            )
            return True
        if cancel:
            self._attempt.cancelled = True
        return True

    def _stopping(self, why: str, action: str) -> None:
        fence = self._fence
        log.warning(
            why, extra={"action": action, "step_id": fence.step_id, "attempt": fence.attempt}
        )
