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

from worker import limits, wire
from worker.engine.start import StartRequest, start_run
from worker.errors import CairnError, DefinitionError
from worker.ids import parse_id
from worker.runtime import Runtime

log = logging.getLogger("cairn.start")
ALLOWED = frozenset(
    {
        "tenant",
        "workflow",
        "spec",
        "version",
        "inputs",
        "idempotency_key",
        "run_id",
        "project",
        "budget_usd",
    }
)


def request_from_kwargs(kwargs: dict[str, Any], default_tenant: str) -> StartRequest:
    """Build a StartRequest from JSON keyword arguments; refuse unknown or mistyped ones."""
    unknown = sorted(set(kwargs) - ALLOWED)
    if unknown:
        raise DefinitionError(
            unknown[0], f"is not an argument of cairn.start_run ({sorted(ALLOWED)})"
        )
    for name, kind in (
        ("tenant", str),
        ("workflow", str),
        ("idempotency_key", str),
        ("project", str),
        ("inputs", dict),
    ):
        if kwargs.get(name) is not None and not isinstance(kwargs[name], kind):
            raise DefinitionError(name, f"must be a {kind.__name__}")
    version = kwargs.get("version")
    if version is not None:
        limits.check_int("version", version, 1)
    budget = kwargs.get("budget_usd")
    budget_usd = limits.check_money("budget_usd", budget) if budget is not None else None
    run_id = kwargs.get("run_id")
    inputs = kwargs.get("inputs")
    tenant, project = kwargs.get("tenant"), kwargs.get("project")
    # An empty tenant or project is refused by start_run, not replaced by the default.
    return StartRequest(
        tenant=default_tenant if tenant is None else tenant,
        workflow=kwargs.get("workflow"),
        spec=kwargs.get("spec"),
        version=version,
        inputs={} if inputs is None else inputs,
        idempotency_key=kwargs.get("idempotency_key"),
        run_id=parse_id(run_id, "run_id") if run_id is not None else None,
        project="default" if project is None else project,
        budget_usd=budget_usd,
    )


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
