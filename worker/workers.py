"""The component registry: each worker process records itself, heartbeats, and says bye.

The reaper marks workers that stopped heartbeating as ``error``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Collection, Iterable

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db.models import Worker
from db.session import run_transaction
from db.states import WorkerStatus
from db.types import utcnow
from db.views import WorkerView
from worker import __version__

log = logging.getLogger("cairn.workers")


class StepNames:
    """The step names the running workers know, as a starting process checks a definition
    against them: read from the registry, then reused for ``ttl_s`` seconds (a read was
    a quarter of a Client's start). A start that names a step missing from names read earlier reads
    them again before it is refused (:class:`~worker.errors.UnregisteredStep`), so a worker
    started a moment ago is never missed."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self._read_at: float | None = None
        self._names: frozenset[str] | None = None

    def cached(self) -> tuple[bool, frozenset[str] | None]:
        """``(True, names)`` while the names read last are fresh; ``(False, None)`` after."""
        if self._read_at is not None and time.monotonic() - self._read_at < self.ttl_s:
            return True, self._names
        return False, None

    def store(self, workers: Iterable[WorkerView]) -> frozenset[str] | None:
        """Keep the names of the running ones among ``workers``; None when none knows any
        (no check: nothing could run the step, whatever its name) and not kept."""
        found = frozenset(
            n for w in workers if w.status == WorkerStatus.RUNNING for n in w.step_names
        )
        self._names = found or None
        # "None runs" is read again at every start: the first worker is seen at once.
        self._read_at = time.monotonic() if found else None
        return self._names

    def forget(self) -> None:
        """Read the names again at the next start (one refused a name they lacked)."""
        self._read_at = None


def register_worker(
    engine: Engine, name: str, queues: Collection[str], step_names: Collection[str]
) -> None:
    """Record this worker as running (a restarted worker of the same name starts afresh)."""

    def work(session: Session) -> None:
        now = utcnow()
        values = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "status": WorkerStatus.RUNNING,
            "queues": sorted(queues),
            "step_names": sorted(step_names),
            "version": __version__,
            "heartbeat_at": now,
            "stopped_at": None,
        }
        existing = session.scalar(select(Worker).where(Worker.name == name))
        if existing is None:
            session.add(Worker(name=name, created_at=now, **values))
        else:
            session.execute(update(Worker).where(Worker.name == name).values(**values))

    run_transaction(engine, work)


def beat_worker(engine: Engine, name: str) -> None:
    """Refresh this worker's heartbeat (an ``error`` worker that beats again is running)."""
    run_transaction(
        engine,
        lambda s: s.execute(
            update(Worker)
            .where(Worker.name == name, Worker.status != WorkerStatus.STOPPED)
            .values(heartbeat_at=utcnow(), status=WorkerStatus.RUNNING)
        ),
    )


def stop_worker(engine: Engine, name: str) -> None:
    """Record a clean shutdown."""
    run_transaction(
        engine,
        lambda s: s.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(status=WorkerStatus.STOPPED, stopped_at=utcnow())
        ),
    )


class WorkerHeartbeat:
    """A daemon thread beating for the worker process every ``interval_s``."""

    def __init__(self, engine: Engine, name: str, interval_s: float) -> None:
        self._engine, self._name, self._interval = engine, name, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="cairn-worker-heartbeat", daemon=True
        )

    def start(self) -> None:
        """Start beating."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating."""
        self._stop.set()
        self._thread.join(timeout=self._interval * 2)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                beat_worker(self._engine, self._name)
            except SQLAlchemyError as exc:
                log.warning(
                    "worker heartbeat failed: %s",
                    type(exc).__name__,
                    extra={"action": "heartbeat_failed"},
                )
