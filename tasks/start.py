"""cairn.start_run: start a run by sending a Celery task by name, from any language.

    celery_app.send_task("cairn.start_run", kwargs={
        "tenant": "acme", "workflow": "report", "inputs": {"topic": "x"},
        "idempotency_key": "report-42"})

Bad arguments are refused with an ERROR log event (``action=refuse_run``) and nothing is
written; the same idempotency key sent again makes no second run.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from worker import wire
from worker.errors import CairnError
from worker.machine.start import StartRequest, start_run
from worker.runtime import Runtime

log = logging.getLogger("cairn.start")


def request_from_kwargs(kwargs: dict[str, Any], default_tenant: str) -> StartRequest:
    """The start request in a message's JSON keyword arguments (tenant: the default one
    when the sender names none; an empty one is refused, not replaced)."""
    data = {k: v for k, v in kwargs.items() if not (k in ("tenant", "project") and v is None)}
    return StartRequest.parse({"tenant": default_tenant} | data)


def register(app: Celery, runtime: Runtime) -> None:
    """Register cairn.start_run on ``app``."""

    @app.task(name=wire.START_RUN, ignore_result=True, acks_late=True)
    def start_run_task(**kwargs: Any) -> str | None:
        try:
            request = request_from_kwargs(kwargs, runtime.settings.default_tenant)
            started = start_run(
                runtime.engine, runtime.settings, request, runtime.registry.names() or None
            )
        except CairnError as exc:
            log.error(
                "start_run refused: %s",
                exc,
                extra={"action": "refuse_run", "workflow": kwargs.get("workflow")},
            )
            return None
        runtime.dispatcher.send(started.messages)
        log.info(
            "run %s",
            "started" if started.created else "already existed",
            extra={"action": "start_run", "run_id": started.run_id},
        )
        return str(started.run_id)
