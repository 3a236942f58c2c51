"""Whose fault is it: the step's own code, or one of cairn's servers.

An error raised by a step's code meets the step's retry policy. A fault of cairn's own
servers (the database, the artifact store, the broker) never does: calls to them are
retried with backoff for ``CAIRN_SERVER_RETRY_S``, and an attempt that still meets one
is released unspent (see ``worker/runner.py``). This module holds that classification
and the retrying wrapper of the artifact store.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import BinaryIO, TypeVar

from sqlalchemy.exc import DBAPIError

from db.errors import describe, is_disconnect
from worker.artifacts import ArtifactStore, Source, StoredObject
from worker.errors import ArtifactStoreUnavailable, DatabaseUnavailable, ServerUnavailable

T = TypeVar("T")
log = logging.getLogger("cairn.faults")


def server_fault(exc: BaseException) -> ServerUnavailable | None:
    """The server fault behind ``exc`` or anything it was raised from; None if the error
    is the step's own.

    The chain is followed because a step may wrap cairn's error in one of its own.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ServerUnavailable):
            return current
        if isinstance(current, DBAPIError) and is_disconnect(current):
            return DatabaseUnavailable(f"lost the database connection ({describe(current)})")
        current = current.__cause__ or current.__context__
    return None


def with_retries(call: Callable[[], T], doing: str, retry_for_s: float) -> T:
    """``call()``, tried again with jittered backoff while the artifact store is away.

    After ``retry_for_s`` seconds the last :class:`ArtifactStoreUnavailable` is raised.
    One warning per outage, naming the store and what was being done, never a secret.
    """
    deadline = time.monotonic() + retry_for_s
    tries = 0
    while True:
        tries += 1
        try:
            result = call()
        except ArtifactStoreUnavailable as exc:
            if time.monotonic() >= deadline:
                raise
            if tries == 1:
                log.warning(
                    "artifact store unavailable while %s, trying again for up to %g s: %s",
                    doing,
                    retry_for_s,
                    exc,
                    extra={"action": "retry_store", "server": "artifact store"},
                )
            delay = min(2.0, 0.05 * 2 ** min(tries, 10))
            time.sleep(random.uniform(delay / 2, delay))
            continue
        if tries > 1:
            log.info(
                "artifact store back after %d tries",
                tries,
                extra={"action": "store_recovered", "server": "artifact store"},
            )
        return result


class RetryingStore(ArtifactStore):
    """An artifact store whose calls ride out a short outage (what steps use).

    A ``put`` of a stream is replayed from where it started when the stream can seek;
    one that cannot is tried once.
    """

    def __init__(self, inner: ArtifactStore, retry_for_s: float) -> None:
        self.inner = inner
        self.retry_for_s = retry_for_s

    def _retry(self, call: Callable[[], T], doing: str) -> T:
        return with_retries(call, doing, self.retry_for_s)

    def put(self, key: str, source: Source, content_type: str | None = None) -> StoredObject:
        """Store ``source`` under ``key``, again from the start after a failed try."""
        if isinstance(source, bytes | str) or not hasattr(source, "read"):
            return self._retry(lambda: self.inner.put(key, source, content_type), "storing")
        stream = source
        if not (isinstance(stream, io.IOBase) and stream.seekable()):
            return self.inner.put(key, source, content_type)
        start = stream.tell()

        def replay() -> StoredObject:
            stream.seek(start)
            return self.inner.put(key, stream, content_type)

        return self._retry(replay, "storing")

    def open(self, key: str) -> BinaryIO:
        """A streaming reader (opening is retried; reading is the caller's)."""
        return self._retry(lambda: self.inner.open(key), "opening an object")

    def get_bytes(self, key: str, expected_sha256: str | None = None) -> bytes:
        """The whole object, verified; the whole read is tried again after a failure."""
        return self._retry(lambda: self.inner.get_bytes(key, expected_sha256), "reading")

    def delete(self, key: str) -> None:
        """Delete the object."""
        self._retry(lambda: self.inner.delete(key), "deleting")

    def exists(self, key: str) -> bool:
        """True if the object exists."""
        return self._retry(lambda: self.inner.exists(key), "checking an object")

    def list_objects(self, prefix: str = "") -> list[tuple[str, datetime]]:
        """Keys under ``prefix`` with their times."""
        return self._retry(lambda: self.inner.list_objects(prefix), "listing")

    def check(self) -> None:
        """Raise unless the store can be used (tried once: this is a probe)."""
        self.inner.check()

    def presigned_url(self, key: str, expires_s: int) -> str:
        """A time-limited GET URL (made locally, nothing to retry)."""
        return self.inner.presigned_url(key, expires_s)
