"""Errors as JSON: ``{"error": {"code", "message", "field"}}`` with a status that fits.

The code is the stable code of the :class:`~worker.errors.CairnError` type, the same a
Python caller catches; ``field`` names the part of the request at fault, when one is.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from db.errors import describe, is_disconnect
from worker import errors

log = logging.getLogger("cairn.api")

#: The HTTP status of each error type; a subclass takes its nearest listed base's.
_STATUS: dict[type[errors.CairnError], int] = {
    errors.Unauthorized: 401,
    errors.NotFound: 404,
    errors.DefinitionError: 422,
    errors.PayloadTooLarge: 413,
    errors.RunNotEnded: 409,
    errors.AlreadyDecided: 409,
    errors.RunEnded: 409,
    errors.IllegalTransition: 409,
    errors.ConfigurationError: 409,
    errors.ArtifactIntegrityError: 502,
    errors.ServerUnavailable: 503,
}


def status_of(exc: errors.CairnError) -> int:
    """The HTTP status for ``exc``: its own type's, else its nearest base's, else 400."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"code": code, "message": message, "field": field}}


def install(app: FastAPI) -> None:
    """Answer every error with the JSON body, and never with a traceback."""
    app.add_exception_handler(errors.CairnError, _cairn_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_error)  # type: ignore[arg-type]
    app.add_exception_handler(OSError, _os_error)  # type: ignore[arg-type]


async def _cairn_error(_request: Request, exc: errors.CairnError) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    field = getattr(exc, "field", None)
    message = exc.reason if isinstance(exc, errors.DefinitionError) else exc.message
    return JSONResponse(error_body(exc.code, message, field), status, headers=headers)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    # ("body", "inputs", "x") -> "inputs.x"; a bare ("body",) is the whole body.
    parts = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(parts) or "body"
    message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    return JSONResponse(error_body(errors.DefinitionError.code, message, field), 422)


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    code = {
        400: "invalid",
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    field = "body" if exc.status_code in (400, 413) else None
    return JSONResponse(error_body(code, str(exc.detail), field), exc.status_code, headers=headers)


async def _database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
    if is_disconnect(exc):
        return _unavailable(describe(exc))
    log.error("database error: %s", describe(exc), extra={"action": "api_error"})
    return JSONResponse(error_body("internal", "the server met an internal error"), 500)


async def _os_error(_request: Request, exc: OSError) -> JSONResponse:
    # asyncpg raises the socket's own error for a refused or broken connection.
    return _unavailable(f"{type(exc).__name__}: {exc}")


def _unavailable(reason: str) -> JSONResponse:
    log.warning("database unavailable: %s", reason, extra={"action": "api_unavailable"})
    body = error_body(
        errors.DatabaseUnavailable.code,
        "the database is not answering; try again shortly",
    )
    return JSONResponse(body, 503, headers={"Retry-After": "5"})
