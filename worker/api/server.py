"""``cairn api``: serve the API with uvicorn, on loopback unless TLS is terminated in front."""

from __future__ import annotations

import uvicorn

from worker.preflight import check_api_address
from worker.settings import Settings

#: uvicorn imports the app from here in each of its worker processes.
APP_FACTORY = "worker.api.app:create_app"


def serve(settings: Settings) -> None:
    """Run uvicorn until stopped (settings come from the environment in each process)."""
    check_api_address(settings)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        # Not "auto": with asyncio's loop, responses of worker processes wait 40 ms on
        # Nagle's algorithm (see pyproject); a missing uvloop must fail, not slow down.
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        # Forwarded headers only from the proxy on the same host, when one is declared.
        proxy_headers=settings.api_behind_tls_proxy,
        server_header=False,
    )
