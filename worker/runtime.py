"""Runtime: what one worker (or client) process holds: settings, engine, dispatcher, steps."""

from __future__ import annotations

import os
import socket
from functools import cache, cached_property

from sqlalchemy import Engine

from db.session import make_engine
from worker.artifacts import ArtifactStore, make_store
from worker.dispatch import Dispatcher
from worker.faults import RetryingStore
from worker.ratelimit import RateLimiter
from worker.registry import StepRegistry
from worker.settings import Settings


class Runtime:
    """The per-process objects cairn needs, built from one Settings object.

    The engine is made on first use, so a prefork child makes its own after the fork.
    """

    def __init__(self, settings: Settings, dispatcher: Dispatcher, registry: StepRegistry) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.registry = registry

    @cached_property
    def engine(self) -> Engine:
        """The SQLAlchemy engine of this process."""
        return make_engine(self.settings)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """The named rate limits of the settings, their buckets in Redis."""
        return RateLimiter(self.settings)

    @cached_property
    def store(self) -> ArtifactStore:
        """The artifact store of this process (S3 or the local folder, by settings)."""
        return make_store(self.settings)

    @cached_property
    def step_store(self) -> ArtifactStore:
        """The store as steps use it: calls ride out an outage of ``server_retry_s``."""
        return RetryingStore(self.store, self.settings.server_retry_s)

    @property
    def owner_prefix(self) -> str:
        """Who this process is, for lease owners: host and pid."""
        return f"{_hostname()}:{os.getpid()}"


@cache
def _hostname() -> str:
    # Asked once per process: every claim names its owner, and a host keeps its name.
    return socket.gethostname()
