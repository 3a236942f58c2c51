"""A small typed client of cairn's HTTP API, for Python services that run no cairn code.

It imports only httpx and the standard library (not Celery, SQLAlchemy or cairn's
engine), needs no database or broker credentials, only the API's URL and a tenant's API
key::

    from cairn.http import HttpClient

    with HttpClient("http://127.0.0.1:8000", api_key) as cairn:
        run_id = cairn.start_run("report", inputs={"url": "https://example.com"},
                                 idempotency_key="order-42")
        run = cairn.wait(run_id, timeout=300)
        print(run["status"], run["outputs"], cairn.costs(run_id)["total_usd"])

Responses are the API's JSON as typed dictionaries (the OpenAPI document at
``/openapi.json`` is the contract, for other languages too); ids are strings and sums of
money decimal strings, as on the wire. An error response raises :class:`ApiError` with
the stable error code and the field at fault.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote

import httpx

#: Run statuses after which nothing changes unless the run is retried.
ENDED = frozenset({"succeeded", "failed", "cancelled"})


class ApiError(Exception):
    """An error answer of the API: its HTTP status, the stable ``code`` of the error (the
    same a Python caller of cairn catches), its message and the request ``field`` at
    fault, if one is."""

    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {code}{where}: {message}")
        self.status, self.code, self.message, self.field = status, code, message, field


class Started(TypedDict):
    """A start's answer: the run, and whether this call made it (False: the idempotency
    key or run id named a run made before)."""

    run_id: str
    created: bool


class Step(TypedDict):
    """One step of a run."""

    id: str
    key: str
    task: str
    status: str
    attempt: int
    max_attempts: int
    output: dict[str, Any] | None
    error: dict[str, Any] | None
    started_at: str | None
    finished_at: str | None
    queued_at: NotRequired[str | None]


class Run(TypedDict):
    """A run with its steps."""

    id: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    cost_usd: str
    created_at: str
    finished_at: str | None
    steps: list[Step]
    budget_usd: NotRequired[str | None]


class RunSummary(TypedDict):
    """A run in a list."""

    id: str
    status: str
    workflow: str
    version: int
    cost_usd: str
    created_at: str
    finished_at: str | None
    steps_total: int
    steps_succeeded: int


class RunPage(TypedDict):
    """A page of runs, newest first; ``next_cursor`` asks for the next page."""

    runs: list[RunSummary]
    next_cursor: str | None


class Costs(TypedDict):
    """A run's costs per step, per provider and model, and in total."""

    run_id: str
    total_usd: str
    steps: list[dict[str, Any]]
    by_model: list[dict[str, Any]]


class Event(TypedDict):
    """One entry of a run's event log."""

    id: str
    at: str
    kind: str
    step_key: str | None
    attempt: int | None
    data: dict[str, Any] | None


class EventPage(TypedDict):
    """Events oldest first; ``next_since`` asks for the ones after them."""

    events: list[Event]
    next_since: str | None


class Artifact(TypedDict):
    """A file a step stored."""

    name: str
    step_key: str
    attempt: int
    key: str
    size: int
    sha256: str
    content_type: str | None
    created_at: str
    deleted_at: str | None


class HttpClient:
    """cairn's HTTP API for one tenant (the tenant of ``api_key``).

    ``transport``: an httpx transport, for tests or a custom network stack.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- runs ----------------------------------------------------------------------
    def start(
        self,
        workflow: str | None = None,
        *,
        spec: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        version: int | None = None,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        project: str | None = None,
        budget_usd: str | None = None,
        priority: int | None = None,
    ) -> Started:
        """Start a run of a registered ``workflow`` or of an inline ``spec``; with an
        ``idempotency_key`` (or ``run_id``) the run made before is returned instead."""
        body: dict[str, Any] = {
            k: v
            for k, v in {
                "workflow": workflow,
                "spec": spec,
                "inputs": inputs,
                "version": version,
                "idempotency_key": idempotency_key,
                "run_id": run_id,
                "project": project,
                "budget_usd": budget_usd,
                "priority": priority,
            }.items()
            if v is not None
        }
        started: Started = self._json("POST", "/v1/runs", json=body)
        return started

    def start_run(self, workflow: str | None = None, **options: Any) -> str:
        """:meth:`start`, returning only the run's id."""
        return self.start(workflow, **options)["run_id"]

    def get_run(self, run_id: str) -> Run:
        """The run with its steps."""
        run: Run = self._json("GET", f"/v1/runs/{run_id}")
        return run

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """A page of the tenant's runs, newest first."""
        params = {"status": status, "workflow": workflow, "limit": limit, "cursor": cursor}
        page: RunPage = self._json("GET", "/v1/runs", params=_present(params))
        return page

    def iter_runs(
        self, *, status: str | None = None, workflow: str | None = None
    ) -> Iterator[RunSummary]:
        """Every run of the tenant, newest first, page by page."""
        cursor: str | None = None
        while True:
            page = self.list_runs(status=status, workflow=workflow, limit=500, cursor=cursor)
            yield from page["runs"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def costs(self, run_id: str) -> Costs:
        """The run's costs per step, per provider and model, and in total."""
        costs: Costs = self._json("GET", f"/v1/runs/{run_id}/costs")
        return costs

    def events(self, run_id: str, *, since: str | None = None, limit: int = 500) -> EventPage:
        """The run's events after ``since`` (the ``next_since`` of the last page)."""
        params = _present({"since": since, "limit": limit})
        page: EventPage = self._json("GET", f"/v1/runs/{run_id}/events", params=params)
        return page

    def cancel(self, run_id: str, reason: str = "") -> bool:
        """Cancel the run; False if it had already ended."""
        done = self._json("POST", f"/v1/runs/{run_id}/cancel", json={"reason": reason})
        return bool(done["cancelled"])

    def retry(self, run_id: str) -> int:
        """Run a failed or cancelled run again from the steps that did not succeed; how
        many steps were queued."""
        return int(self._json("POST", f"/v1/runs/{run_id}/retry")["queued"])

    def wait(self, run_id: str, timeout: float = 60.0, poll_s: float = 0.5) -> Run:
        """The run once it has ended; :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run["status"] in ENDED:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {run['status']} after {timeout:g} s")
            time.sleep(poll_s)

    # --- artifacts -----------------------------------------------------------------
    def artifacts(self, run_id: str) -> list[Artifact]:
        """The run's artifacts, oldest first."""
        found: list[Artifact] = self._json("GET", f"/v1/runs/{run_id}/artifacts")
        return found

    def download(self, run_id: str, name: str, *, step: str | None = None) -> bytes:
        """An artifact's bytes (the API checks them against their sha256 as they stream)."""
        path = f"/v1/runs/{run_id}/artifacts/{quote(name)}/content"
        response = self._http.get(path, params=_present({"step": step}))
        _raise_for_error(response)
        return response.content

    def presigned_url(
        self, run_id: str, name: str, *, step: str | None = None, expires_s: int = 3600
    ) -> str:
        """A time-limited GET URL of an artifact (S3 storage only)."""
        path = f"/v1/runs/{run_id}/artifacts/{quote(name)}/url"
        params = _present({"step": step, "expires_s": expires_s})
        return str(self._json("GET", path, params=params)["url"])

    # --- the wire ------------------------------------------------------------------
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _raise_for_error(response)
        return response.json()


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json()["error"]
        code, message, field = detail["code"], detail["message"], detail.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, field = "http_error", response.text[:500] or response.reason_phrase, None
    raise ApiError(response.status_code, code, message, field)
