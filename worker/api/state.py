"""What the API process holds (engine, broker, store) and who a request acts for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from db.repositories import WorkerRepository
from db.session import async_transaction, run_transaction_async
from db.types import utcnow
from worker.apikeys import Principal, authenticate, authenticate_session, hash_secret
from worker.artifacts import ArtifactStore, make_store
from worker.dispatch import Dispatcher
from worker.errors import Unauthorized, UnregisteredStep
from worker.machine.messages import StepMessage
from worker.settings import Settings
from worker.workers import StepNames

T = TypeVar("T")
#: Checked keys kept at most (only valid keys are kept: a flood of wrong ones adds none).
_KEY_CACHE_MAX = 10_000


@dataclass
class ApiState:
    """The per-process objects of one API server."""

    settings: Settings
    engine: AsyncEngine
    dispatcher: Dispatcher
    #: The running workers' step names, as starts check definitions against them.
    known_steps: StepNames = field(default_factory=StepNames)
    #: sha256 of a checked key ("ui:" + that of a session) -> (when checked, whom it names).
    _keys: dict[str, tuple[float, Principal]] = field(default_factory=dict)

    async def principal(self, token: str, *, dashboard: bool = False) -> Principal | None:
        """The tenant of API key ``token`` (of dashboard session ``token`` with
        ``dashboard``): checked in the database, then trusted for ``api_key_cache_s``
        seconds (a revoked key, an ended session, stops working within that time)."""
        # A session token is never a key: each kind has its own entries.
        digest = ("ui:" if dashboard else "") + hash_secret(token)
        ttl = self.settings.api_key_cache_s
        cached = self._keys.get(digest)
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
        check = authenticate_session if dashboard else authenticate
        found = await self.write(lambda s: check(s, token, utcnow()))
        if found is None:
            self._keys.pop(digest, None)
        elif ttl > 0:
            if len(self._keys) >= _KEY_CACHE_MAX:
                self._keys.clear()  # bounded; a burst of new keys costs one lookup each
            self._keys[digest] = (time.monotonic(), found)
        return found

    def forget(self, token: str) -> None:
        """Trust dashboard session ``token`` no longer in this process (it just ended here)."""
        self._keys.pop("ui:" + hash_secret(token), None)

    @cached_property
    def store(self) -> ArtifactStore:
        """The artifact store (made on first use: a run read never needs it)."""
        return make_store(self.settings)

    async def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, again while the database asks for it."""
        return await run_transaction_async(
            self.engine, work, retry_for_s=min(self.settings.server_retry_s, 10.0)
        )

    async def read(self, work: Callable[[Session], T]) -> T:
        """Run the read ``work`` in one transaction."""
        async with async_transaction(self.engine) as session:
            return await session.run_sync(work)

    async def send(self, messages: list[StepMessage]) -> None:
        """Send step messages after the commit (kombu is sync: off the event loop)."""
        if messages:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._publisher, self.dispatcher.send, messages)

    @cached_property
    def _publisher(self) -> ThreadPoolExecutor:
        # One thread sends for the whole process: from the request thread pool, concurrent
        # sends each took a producer of their own and churned broker connections (a fifth
        # of a start's CPU, py-spy); one sender keeps one producer and one connection.
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-publish")

    async def step_names(self) -> frozenset[str] | None:
        """The step names the running workers know, or None (no check) when none run
        (kept a few seconds: :class:`~worker.workers.StepNames`)."""
        hit, names = self.known_steps.cached()
        if hit:
            return names
        workers = await self.read(lambda s: WorkerRepository(s).views())
        return self.known_steps.store(workers)

    async def checking_step_names(self, use: Callable[[frozenset[str] | None], Awaitable[T]]) -> T:
        """``use(names)``, run again with names read anew if it refused a step name that
        names read a moment ago may have missed (a worker just started). A definition
        naming a step no worker has is refused, as the Client does."""
        try:
            return await use(await self.step_names())
        except UnregisteredStep:
            self.known_steps.forget()
            return await use(await self.step_names())


def get_state(request: Request) -> ApiState:
    """The API state of the application serving ``request``."""
    state: ApiState = request.app.state.cairn
    return state


_bearer = HTTPBearer(
    auto_error=False,
    description="An API key made by `cairn api-keys create --tenant T`; it names the tenant.",
)


#: The dashboard's session cookie: a session token (worker/apikeys.py), never the API key;
#: HttpOnly and SameSite=Strict, set by the login page (worker/api/ui.py) so the page's
#: own requests carry it.
SESSION_COOKIE = "cairn_key"


async def get_principal(
    request: Request,
    state: Annotated[ApiState, Depends(get_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The tenant of the request's API key (``Authorization: Bearer``) or, for the
    dashboard's own requests, of its session cookie; 401 without a valid one."""
    if credentials is not None:
        found = await state.principal(credentials.credentials)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        found = await state.principal(cookie, dashboard=True)
        if found is None:
            raise Unauthorized("the dashboard session has ended: log in again at /ui/login")
    else:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    if found is None:
        raise Unauthorized("the API key is not valid (unknown, revoked or mistyped)")
    return found


State = Annotated[ApiState, Depends(get_state)]
Caller = Annotated[Principal, Depends(get_principal)]
