"""The FastAPI application: routers, error bodies, a body-size limit, its lifespan, and its
documentation pages (/docs, /redoc) served without a CDN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

    # FastAPI's /docs and /redoc load their scripts from a CDN: a page left blank on a
    # network with no way out. These serve them from the package.
    app = FastAPIOffline(
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
    app.add_middleware(_BodyLimit)
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


class _BodyLimit:
    """Refuse a request body over ``MAX_BODY_BYTES`` with 413, declared or streamed.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``app.middleware("http")``)
    runs every request through a task group and memory streams, a sixth of a start's CPU
    in the API (py-spy).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            await _too_large()(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:  # a body sent without a length, or lying
                    # Raised where the route reads its body: answered as every 413 is.
                    raise HTTPException(413, _TOO_LARGE)
            return message

        await self.app(scope, counted, send)


_TOO_LARGE = f"the request body is over {MAX_BODY_BYTES} bytes"


def _too_large() -> JSONResponse:
    return JSONResponse(errors.error_body("payload_too_large", _TOO_LARGE, "body"), 413)
