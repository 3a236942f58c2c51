"""cairn.start_run: start a run by sending a Celery task by name, from any language.

    celery_app.send_task("cairn.start_run", kwargs={
        "tenant": "acme", "workflow": "report", "inputs": {"topic": "x"},
        "idempotency_key": "report-42"})

Bad arguments are refused with an ERROR log event (``action=refuse_run``) and nothing is
written; the same idempotency key sent again makes no second run.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from celery import Celery

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
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise DefinitionError("version", "must be an integer")
    budget = kwargs.get("budget_usd")
    try:
        budget_usd = Decimal(str(budget)) if budget is not None else None
    except InvalidOperation:
        raise DefinitionError("budget_usd", "must be a number") from None
    run_id = kwargs.get("run_id")
    try:
        parsed_run_id = parse_id(run_id, "run_id") if run_id is not None else None
    except ValueError as exc:
        raise DefinitionError("run_id", str(exc)) from None
    return StartRequest(
        tenant=kwargs.get("tenant") or default_tenant,
        workflow=kwargs.get("workflow"),
        spec=kwargs.get("spec"),
        version=version,
        inputs=kwargs.get("inputs") or {},
        idempotency_key=kwargs.get("idempotency_key"),
        run_id=parsed_run_id,
        project=kwargs.get("project") or "default",
        budget_usd=budget_usd,
    )


def register(app: Celery, runtime: Runtime) -> None:
    """Register cairn.start_run on ``app``."""

    @app.task(name="cairn.start_run", ignore_result=True, acks_late=True)
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
