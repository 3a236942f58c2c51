"""cairn: a durable workflow engine on Celery. This is its public face::

    from cairn import step, StepContext, Client

    @step("fetch_pages")
    def fetch(ctx: StepContext, url: str) -> dict:
        ...

Everything a step module or a service needs is imported from here; the packages behind
it (``worker``, ``tasks``, ``db``) are cairn's internals and may move.
"""

from __future__ import annotations

from cairn._guard import RESERVED, ShadowedModule, check_not_shadowed

check_not_shadowed()

# The guard runs first: importing these from a shadowed package would fail far away.
from worker.client import Client  # noqa: E402
from worker.context import StepContext  # noqa: E402
from worker.definitions.spec import MapSpec, RetryPolicy, StepSpec, WorkflowSpec  # noqa: E402
from worker.errors import (  # noqa: E402
    CairnError,
    ChildRunFailed,
    DefinitionError,
    NonRetryableError,
    NotFound,
    RunCancelled,
    ServerUnavailable,
)
from worker.registry import step  # noqa: E402
from worker.settings import Settings, get_settings  # noqa: E402

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
