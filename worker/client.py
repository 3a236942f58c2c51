"""Start, read, wait for and cancel runs from any Python service.

Reads come from the database, never from Celery results::

    client = Client()
    run_id = client.start_run("report", inputs={"url": "..."}, idempotency_key="r-42")
    view = client.wait(run_id, timeout=600)
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from db.repositories import RunRepository, find_tenant
from db.session import run_transaction, transaction
from db.types import utcnow
from worker.app import make_celery
from worker.definitions import WorkflowSpec
from worker.dispatch import Dispatcher
from worker.engine.cancel import cancel_run
from worker.engine.start import StartRequest, start_run
from worker.errors import CairnError, NotFound
from worker.ids import parse_id
from worker.registry import StepRegistry, registry
from worker.runtime import Runtime
from worker.settings import Settings, get_settings
from worker.views import RunView


class RunNotFinished(CairnError):
    """The run did not finish within the time waited."""


class Client:
    """A connection to cairn for one tenant."""

    def __init__(
        self,
        settings: Settings | None = None,
        tenant: str | None = None,
        *,
        steps: StepRegistry | None = None,
        load_step_modules: bool = False,
    ) -> None:
        self.settings = settings or get_settings()
        self.tenant = tenant or self.settings.default_tenant
        self._registry = steps or registry
        if load_step_modules:
            self._registry.load_modules(self.settings.step_modules)
        self._app = make_celery(self.settings)
        self.runtime = Runtime(self.settings, Dispatcher(self._app), self._registry)

    def close(self) -> None:
        """Release the database pool and broker connections."""
        self.runtime.engine.dispose()
        self._app.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start_run(
        self,
        workflow: str | None = None,
        *,
        spec: WorkflowSpec | dict[str, Any] | str | None = None,
        version: int | None = None,
        inputs: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        run_id: uuid.UUID | str | None = None,
        project: str = "default",
        budget_usd: Decimal | None = None,
    ) -> uuid.UUID:
        """Start a run of ``workflow`` (a registered name) or of ``spec``; return its id.

        The run is committed before any message is sent. The same ``idempotency_key``
        returns the run it first made.
        """
        request = StartRequest(
            tenant=self.tenant,
            workflow=workflow,
            spec=spec,
            version=version,
            inputs=inputs if inputs is not None else {},
            idempotency_key=idempotency_key,
            run_id=parse_id(run_id, "run_id") if run_id is not None else None,
            project=project,
            budget_usd=budget_usd,
        )
        names = self._registry.names() or None
        started = start_run(self.runtime.engine, self.settings, request, names)
        self.runtime.dispatcher.send(started.messages)
        return started.run_id

    def get_run(self, run_id: uuid.UUID | str) -> RunView:
        """The run with its steps; :class:`NotFound` if missing or another tenant's."""
        rid = parse_id(run_id, "run_id")

        def read(session: Session) -> RunView:
            tenant = find_tenant(session, self.tenant)
            if tenant is None:
                raise NotFound(f"run {rid} not found")
            runs = RunRepository(session, tenant.id)
            return RunView.of(runs.get(rid), list(runs.steps(rid)))

        with transaction(self.runtime.engine) as session:
            return read(session)

    def wait(self, run_id: uuid.UUID | str, timeout: float = 60.0, poll_s: float = 0.2) -> RunView:
        """Poll until the run has finished; :class:`RunNotFinished` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.get_run(run_id)
            if view.finished:
                return view
            if time.monotonic() > deadline:
                raise RunNotFinished(f"run {view.id} is still {view.status} after {timeout:g} s")
            time.sleep(poll_s)

    def cancel(self, run_id: uuid.UUID | str, reason: str = "") -> bool:
        """Cancel the run; False if it had already finished."""
        rid = parse_id(run_id, "run_id")

        def work(session: Session) -> bool:
            tenant = find_tenant(session, self.tenant)
            if tenant is None:
                raise NotFound(f"run {rid} not found")
            return cancel_run(session, tenant.id, rid, utcnow(), reason)

        return run_transaction(self.runtime.engine, work)
