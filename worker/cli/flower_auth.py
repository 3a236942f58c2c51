"""Flower behind basic auth on every endpoint but ``/healthcheck``.

Flower checks its basic auth only in handlers marked ``@web.authenticated``: ``/metrics``,
the static files (routed by Tornado itself) and the 404 page answer anyone.
:func:`protect_flower` wraps every handler Flower routes (its module-level list, before
the app is built) so the credentials are checked in ``prepare``, before any handler code
runs; ``/healthcheck`` stays open for load balancers and probes. Without a password
(loopback only, see ``cairn flower``) nothing changes.
"""

from __future__ import annotations

import hmac
from base64 import b64decode
from binascii import Error as Base64Error
from typing import Any

from tornado.web import HTTPError, RequestHandler, StaticFileHandler, url

#: Paths that stay open: a probe carries no credentials.
OPEN_PATHS = frozenset({"/healthcheck"})


class _BasicAuthRequired(RequestHandler):
    """Mixed in before a Flower handler: refuse the request unless its basic auth matches."""

    def prepare(self) -> Any:
        allowed: list[str] = list(self.application.options.basic_auth or [])  # type: ignore[attr-defined]
        if allowed and not _matches(self.request.headers.get("Authorization", ""), allowed):
            self.set_header("WWW-Authenticate", 'Basic realm="flower"')
            raise HTTPError(401)
        return super().prepare()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:  # plain: Flower's error pages would run its own auth again
            self.set_header("WWW-Authenticate", 'Basic realm="flower"')
            self.finish("Access denied")
            return
        super().write_error(status_code, **kwargs)


def _matches(header: str, allowed: list[str]) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme != "Basic" or not token:
        return False
    try:
        given = b64decode(token.strip(), validate=True).decode()
    except (Base64Error, UnicodeDecodeError):
        return False
    # Compare with every stored pair, always: the time taken says nothing about which.
    results = [hmac.compare_digest(given.encode(), pair.encode()) for pair in allowed]
    return any(results)


def _guarded(handler_class: type[RequestHandler]) -> type[RequestHandler]:
    if issubclass(handler_class, _BasicAuthRequired):
        return handler_class
    return type(handler_class.__name__, (_BasicAuthRequired, handler_class), {})


def protect(handlers: list[Any]) -> list[Any]:
    """``handlers`` (Flower's routing list) with every handler but the open ones guarded."""
    return [_protect_one(spec) for spec in handlers]


def _protect_one(spec: Any) -> Any:
    if isinstance(spec, url):
        pattern = spec.regex.pattern.rstrip("$")
        if pattern in OPEN_PATHS:
            return spec
        return url(pattern, _guarded(spec.handler_class), spec.kwargs, spec.name)
    if spec[0] in OPEN_PATHS:
        return spec
    return (spec[0], _guarded(spec[1]), *spec[2:])


def protect_flower() -> None:
    """Guard Flower's routes in place, before ``flower`` builds its application."""
    from flower import urls

    urls.handlers[:] = protect(urls.handlers)
    # Tornado routes /static/ itself, ahead of the list, with this class.
    urls.settings["static_handler_class"] = _guarded(StaticFileHandler)
