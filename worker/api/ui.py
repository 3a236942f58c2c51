"""The dashboard: pages served by the API process, with no build step and no CDN.

Each page is a static HTML shell with a small vanilla-JS module (``static/``) that reads
the same ``/v1`` endpoints as every other client, so the page shows nothing a key could
not read over HTTP. Logging in checks the tenant's API key and keeps a session token in a
cookie (HttpOnly, SameSite=Strict: the page's scripts never see it, and another site
cannot send it); the key itself is never stored in the browser. Logging out ends the
session in the database.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from db.types import utcnow
from worker.api.bodies import StrictJsonRoute
from worker.api.state import SESSION_COOKIE, State
from worker.apikeys import SESSION_TTL, close_session, open_session
from worker.errors import Unauthorized

STATIC = Path(__file__).parent / "static"

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=StrictJsonRoute)


class Login(BaseModel):
    """The API key a person pastes into the login page."""

    key: str = Field(min_length=1, max_length=200)


def install(app: FastAPI) -> None:
    """Serve the pages under ``/ui`` and their assets under ``/ui/static``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


@router.get("")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/runs", status_code=303)


@router.get("/login")
async def login_page() -> FileResponse:
    return FileResponse(STATIC / "login.html")


@router.post("/session")
async def login(body: Login, state: State) -> Response:
    """Check the key and open a session, its token in the cookie; 401 if the key is not
    valid."""
    principal = await state.principal(body.key)
    if principal is None:
        raise Unauthorized("the API key is not valid (unknown, revoked or mistyped)")
    token = await state.write(lambda s: open_session(s, principal, utcnow()))
    response = Response(status_code=204)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=state.settings.api_behind_tls_proxy,
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request, state: State) -> Response:
    """End the session in the database (the cookie is then worthless) and drop the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await state.write(lambda s: close_session(s, token))
        state.forget(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/runs")
async def runs_page(request: Request, state: State) -> Response:
    return await _page(request, state, "runs.html")


@router.get("/runs/{run_id}")
async def run_page(request: Request, state: State) -> Response:
    return await _page(request, state, "run.html")


@router.get("/overview")
async def overview_page(request: Request, state: State) -> Response:
    return await _page(request, state, "overview.html")


async def _page(request: Request, state: State, name: str) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or await state.principal(token, dashboard=True) is None:
        return RedirectResponse("/ui/login", status_code=303)
    return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})
