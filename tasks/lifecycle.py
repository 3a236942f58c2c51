"""Worker process signals: load step modules, register in the component registry."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown, worker_ready, worker_shutdown

from worker import metrics, tracing
from worker.logs import configure_logging
from worker.runtime import Runtime
from worker.workers import WorkerHeartbeat, register_worker, stop_worker

log = logging.getLogger("cairn.worker")


def connect(app: Celery, runtime: Runtime) -> None:
    """Connect the worker signals of ``app`` to cairn."""
    state: dict[str, Any] = {}

    @worker_init.connect(weak=False)
    def _init(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        settings = runtime.settings
        configure_logging(settings.log_level, settings.secret_values(), settings.log_format)
        runtime.registry.load_modules(runtime.settings.step_modules)
        if settings.metrics_port is not None:
            folder = settings.metrics_dir or Path(tempfile.gettempdir()) / (
                f"cairn-metrics-{os.getpid()}"
            )
            metrics.serve_multiprocess(settings.metrics_port, folder, settings.metrics_host)
            log.info(
                "metrics on http://%s:%d/metrics",
                settings.metrics_host,
                settings.metrics_port,
                extra={"action": "serve_metrics"},
            )

    @worker_process_shutdown.connect(weak=False)
    def _child_exit(pid: int | None = None, **_: Any) -> None:
        metrics.child_exited(pid or os.getpid())
        tracing.shutdown()  # export the child's last spans

    @worker_ready.connect(weak=False)
    def _ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        name = sender.hostname
        queues = [q.name for q in app.amqp.queues.consume_from.values()]
        register_worker(runtime.engine, name, queues, runtime.registry.names())
        # Stamp the broker's epoch if Redis has none (a new or emptied Redis): what is sent
        # after this worker came up is not taken for lost at beat's first look.
        runtime.dispatcher.broker_epoch()
        beat = WorkerHeartbeat(runtime.engine, name, runtime.settings.heartbeat_interval_s)
        beat.start()
        state.update(name=name, beat=beat)
        log.info("worker running", extra={"action": "register_worker"})

    @worker_shutdown.connect(weak=False)
    def _shutdown(sender: Any = None, **_: Any) -> None:
        if "name" not in state:
            return
        state["beat"].stop()
        stop_worker(runtime.engine, state["name"])
        log.info("worker stopped", extra={"action": "stop_worker"})
