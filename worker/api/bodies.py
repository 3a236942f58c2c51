"""Request bodies and page envelopes of the API (responses are the views of ``db.views``).

Bodies describe the shape for the OpenAPI document and refuse unknown fields; what a
value may be (lengths, limits, the definition itself) is checked by the same code the
Client goes through, so the two doors cannot disagree.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from db.views import (
    CostTotal,
    EventView,
    RunSummary,
)
from worker import limits
from worker.serialization import loads_unique


class ErrorDetail(BaseModel):
    """What went wrong: the stable code of the error type, a message, the field at fault."""

    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: The error responses every operation may give, for the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("The body is not JSON text"),
    401: _error("No valid API key"),
    404: _error("Not found, or another tenant's"),
    409: _error("Not possible in the object's state or this configuration"),
    413: _error("The request body is too large"),
    422: _error("A field of the request is not valid; `field` names it"),
    503: _error("The database or another server is not answering; try again"),
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartBody(_Body):
    """Start a run of a registered workflow (``workflow``) or of an inline ``spec``."""

    workflow: str | None = Field(None, max_length=limits.WORKFLOW_NAME_MAX)
    spec: dict[str, Any] | None = Field(None, description="An inline workflow definition.")
    version: int | None = Field(None, ge=1, le=limits.INT_MAX)
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=limits.IDEMPOTENCY_KEY_MAX,
        description="The same key returns the run it first made (200 instead of 201).",
    )
    run_id: uuid.UUID | None = Field(None, description="A run id chosen by the caller.")
    project: str = Field("default", min_length=1, max_length=limits.PROJECT_MAX)
    budget_usd: Decimal | None = Field(None, ge=0, description="Stop paying past this sum.")
    priority: int | None = Field(
        None, ge=0, le=9, description="0 (lowest) to 9 for every step of the run."
    )


class StartedBody(BaseModel):
    """The run a start made (``created``) or found by its idempotency key or id."""

    run_id: uuid.UUID
    created: bool


class ForkBody(_Body):
    """Fork a run at one of its steps: that step and the ones after it run again."""

    from_step: str = Field(min_length=1, max_length=200, description="The first step run again.")
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Run inputs to change (merged over the run's)."
    )
    step_inputs: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Inputs of single steps (from_step or after it), by step key.",
    )
    label: str | None = Field(None, min_length=1, max_length=200)


class CancelBody(_Body):
    """Why the run is cancelled (kept in its events)."""

    reason: str = Field("", max_length=limits.DESCRIPTION_MAX)


class CancelledBody(BaseModel):
    """False when the run had already ended."""

    cancelled: bool


class RunGraph(BaseModel):
    """The DAG's edges as ``[upstream key, downstream key]`` pairs."""

    edges: list[list[str]]


class RetriedBody(BaseModel):
    """How many steps were queued at once by the retry."""

    queued: int


class DefinitionBody(_Body):
    """A workflow definition to validate and store (the same spec keeps its version)."""

    spec: dict[str, Any]
    project: str = Field("default", min_length=1, max_length=limits.PROJECT_MAX)


class ScheduleBody(_Body):
    """Start ``workflow`` with ``inputs`` on every slot of ``cron`` in ``timezone``."""

    name: str = Field(min_length=1, max_length=limits.SCHEDULE_NAME_MAX)
    workflow: str = Field(min_length=1, max_length=limits.WORKFLOW_NAME_MAX)
    cron: str = Field(min_length=1, max_length=limits.CRON_MAX)
    timezone: str = Field("UTC", min_length=1, max_length=limits.TIMEZONE_MAX)
    inputs: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(None, ge=1, le=limits.INT_MAX)
    project: str = Field("default", min_length=1, max_length=limits.PROJECT_MAX)
    missed_policy: Literal["skip", "catch_up"] = "skip"
    catch_up_max: int = Field(0, ge=0, le=limits.INT_MAX)


@dataclass(frozen=True)
class RunPage:
    """A page of runs, newest first; ``next_cursor`` reads the next (older) page."""

    runs: list[RunSummary]
    next_cursor: uuid.UUID | None


@dataclass(frozen=True)
class EventPage:
    """Events after ``since``, oldest first; pass ``next_since`` to follow the run."""

    events: list[EventView]
    next_since: uuid.UUID | None


@dataclass(frozen=True)
class TenantCosts:
    """The tenant's costs over every run, by provider and model."""

    by_model: list[CostTotal]


@dataclass(frozen=True)
class PresignedUrl:
    """A time-limited GET URL of an artifact."""

    url: str
    expires_s: int


@dataclass(frozen=True)
class Health:
    """The API and its database answer."""

    status: str
    database: str


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is refused (422, ``invalid``, field ``body``) when an object
    in it names a key twice: the JSON parser keeps the last one without a word, so a
    repeated ``"after"`` or ``"inputs"`` would change a run quietly. The Client and the
    CLI refuse the same documents (``serialization.loads_unique``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if "json" in request.headers.get("content-type", ""):
                body = await request.body()  # kept on the request: read once
                # Malformed JSON, text that is not UTF-8, nesting past the parser's
                # depth: passed on, for FastAPI's own parse to refuse as it does.
                if body:
                    with contextlib.suppress(ValueError, RecursionError):
                        # Kept where Starlette's Request.json() keeps its parse, so
                        # FastAPI reads this one instead of parsing the body again.
                        request._json = loads_unique(body, "body")
            return await handler(request)

        return strict
