"""cairn: a durable workflow engine on Celery. This is its public face::

    from cairn import step, StepContext, Client

    @step("fetch_pages")
    def fetch(ctx: StepContext, url: str) -> dict:
        ...

Everything a step module or a service needs is imported from here; the packages behind
it (``worker``, ``tasks``, ``db``) are cairn's internals and may move. A service that only
talks to cairn over HTTP imports ``cairn.http`` (httpx and the standard library only).

The names are loaded on first use, so ``import cairn.http`` stays light; before the first
one is, the shadowing check names any module of the user's that would stand in for one of
cairn's internal packages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cairn._guard import RESERVED, ShadowedModule, check_not_shadowed

if TYPE_CHECKING:
    from worker.client import Client
    from worker.context import StepContext
    from worker.definitions.spec import MapSpec, RetryPolicy, StepSpec, WorkflowSpec
    from worker.errors import (
        CairnError,
        ChildRunFailed,
        DefinitionError,
        NonRetryableError,
        NotFound,
        RunCancelled,
        ServerUnavailable,
    )
    from worker.registry import step
    from worker.settings import Settings, get_settings

#: Each public name and the internal module it lives in.
_HOMES = {
    "Client": "worker.client",
    "StepContext": "worker.context",
    "MapSpec": "worker.definitions.spec",
    "RetryPolicy": "worker.definitions.spec",
    "StepSpec": "worker.definitions.spec",
    "WorkflowSpec": "worker.definitions.spec",
    "CairnError": "worker.errors",
    "ChildRunFailed": "worker.errors",
    "DefinitionError": "worker.errors",
    "NonRetryableError": "worker.errors",
    "NotFound": "worker.errors",
    "RunCancelled": "worker.errors",
    "ServerUnavailable": "worker.errors",
    "step": "worker.registry",
    "Settings": "worker.settings",
    "get_settings": "worker.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cairn' has no attribute {name!r}")
    # Importing from a shadowed package would fail far away: name the culprit first.
    check_not_shadowed()
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "RESERVED",
    "CairnError",
    "ChildRunFailed",
    "Client",
    "DefinitionError",
    "MapSpec",
    "NonRetryableError",
    "NotFound",
    "RetryPolicy",
    "RunCancelled",
    "ServerUnavailable",
    "Settings",
    "ShadowedModule",
    "StepContext",
    "StepSpec",
    "WorkflowSpec",
    "get_settings",
    "step",
]
