"""Identifiers: every primary key in cairn is a UUIDv7 (RFC 9562), made here only.

UUIDv7 is time-ordered, so new rows land at the end of B-tree indexes and ids sort by
creation time, which is what the run lists and the event log want.
"""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7 as _uuid7

from worker.errors import InvalidId


def new_id() -> uuid.UUID:
    """A new UUIDv7 as a standard :class:`uuid.UUID`."""
    return _uuid7()


def parse_id(value: str | uuid.UUID, what: str = "id") -> uuid.UUID:
    """Parse a UUID given by a caller; a malformed one raises :class:`InvalidId` (a
    ``DefinitionError`` and a ``ValueError``) naming ``what``."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidId(what, value) from None
