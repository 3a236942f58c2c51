"""The FastAPI application: routers, error bodies, a body-size limit, and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from db.session import async_transaction, make_async_engine
from worker import __version__, tracing
from worker.api import approvals, artifacts, catalog, errors, metrics, runs, ui
from worker.api.bodies import ERRORS, Health
from worker.api.state import ApiState, State
from worker.app import make_celery
from worker.dispatch import Dispatcher
from worker.settings import Settings, get_settings

#: A request body larger than this is refused before it is read (413): inputs and
#: definitions have their own, smaller limits; this one keeps memory bounded.
MAX_BODY_BYTES = 8 * 1024 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API application for ``settings`` (from the environment when None)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracing.ensure_setup("cairn-api")
        celery = make_celery(settings)
        engine = make_async_engine(settings)
        app.state.cairn = ApiState(settings, engine, Dispatcher(celery))
        try:
            yield
        finally:
            await engine.dispose()
            celery.close()

    app = FastAPI(
        title="cairn",
        version=__version__,
        description=(
            "Start, read, follow and control durable workflow runs over HTTP. Every "
            "request carries an API key (`Authorization: Bearer <key>`, made with "
            "`cairn api-keys create --tenant T`); the key names the tenant."
        ),
        lifespan=lifespan,
    )
    errors.install(app)
    app.middleware("http")(_limit_body)
    for router in (runs.router, artifacts.router, catalog.router, approvals.router, metrics.router):
        app.include_router(router, responses=ERRORS)
    ui.install(app)
    app.add_api_route(
        "/healthz", _health, methods=["GET"], tags=["health"], responses={503: ERRORS[503]}
    )
    return app


async def _health(state: State) -> Health:
    """200 when the API and its database answer (no key needed: for load balancers)."""
    async with async_transaction(state.engine) as session:
        await session.execute(text("SELECT 1"))
    return Health("ok", "ok")


async def _limit_body(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return JSONResponse(
            errors.error_body(
                "payload_too_large",
                f"the request body is over {MAX_BODY_BYTES} bytes",
                "body",
            ),
            413,
        )
    return await call_next(request)
