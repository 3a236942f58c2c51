"""API keys: made, listed, revoked and checked; the key itself is never stored or logged.

A key reads ``cairn_<prefix>_<secret>``. The prefix (8 characters) is public: it finds the
row and names the key in lists. The database keeps the sha256 of the whole key; a
request's key is hashed and compared in constant time. Functions take the caller's
session and never commit.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db.models import ApiKey, Tenant
from db.repositories import ensure_tenant, find_tenant
from worker import limits
from worker.errors import NotFound

_TOKEN = re.compile(r"cairn_([a-z2-7]{8})_([A-Za-z0-9_-]{43})")
#: ``last_used_at`` is written at most this often, not on every request.
_TOUCH_EVERY = timedelta(seconds=60)
NAME_MAX = limits.API_KEY_NAME_MAX


@dataclass(frozen=True)
class ApiKeyView:
    """A key as lists show it: never the key, never its hash."""

    id: uuid.UUID
    tenant: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the tenant of its key."""

    tenant_id: uuid.UUID
    tenant: str
    key_id: uuid.UUID


def hash_secret(token: str) -> str:
    """The stored form of a key: hex sha256 of the whole key."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token(token: str) -> str | None:
    """The prefix of a well-formed key, or None."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def create_key(session: Session, tenant: str, name: str, now: datetime) -> tuple[ApiKeyView, str]:
    """A new key of ``tenant`` (made if missing): its view, and the key, shown this once."""
    limits.check_text("tenant", tenant, limits.TENANT_MAX)
    limits.check_text("name", name, NAME_MAX)
    owner = ensure_tenant(session, tenant)
    # 8 base32 characters: 40 bits, unique by the index; a clash is one failed insert.
    prefix = base64.b32encode(secrets.token_bytes(5)).decode().lower()
    token = f"cairn_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        tenant_id=owner.id, name=name, prefix=prefix, secret_hash=hash_secret(token), created_at=now
    )
    session.add(row)
    session.flush()
    return _view(row, tenant), token


def list_keys(session: Session, tenant: str) -> list[ApiKeyView]:
    """The tenant's keys, oldest first (revoked ones too, marked)."""
    owner = find_tenant(session, tenant)
    if owner is None:
        return []
    rows = session.scalars(
        select(ApiKey).where(ApiKey.tenant_id == owner.id).order_by(ApiKey.id)
    ).all()
    return [_view(r, tenant) for r in rows]


def revoke_key(session: Session, tenant: str, key: str, now: datetime) -> ApiKeyView:
    """Revoke the tenant's key ``key`` (its id or prefix); :class:`NotFound` if none."""
    owner = find_tenant(session, tenant)
    match = [ApiKey.prefix == key]
    with contextlib.suppress(ValueError):
        match.append(ApiKey.id == uuid.UUID(key))
    row = (
        session.scalar(select(ApiKey).where(ApiKey.tenant_id == owner.id, or_(*match)))
        if owner is not None
        else None
    )
    if row is None:
        raise NotFound(f"tenant {tenant!r} has no API key {key!r}")
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()
    return _view(row, tenant)


def authenticate(session: Session, token: str, now: datetime) -> Principal | None:
    """The tenant of a valid, unrevoked key; None for anything else (never an error)."""
    prefix = parse_token(token)
    if prefix is None:
        return None
    found = session.execute(
        select(ApiKey.id, ApiKey.secret_hash, ApiKey.revoked_at, ApiKey.last_used_at, Tenant)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.prefix == prefix)
    ).first()
    if found is None:
        return None
    key_id, stored, revoked_at, last_used_at, tenant = found
    if not hmac.compare_digest(stored, hash_secret(token)) or revoked_at is not None:
        return None
    if last_used_at is None or now - last_used_at >= _TOUCH_EVERY:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
    return Principal(tenant.id, tenant.name, key_id)


def _view(row: ApiKey, tenant: str) -> ApiKeyView:
    return ApiKeyView(
        row.id, tenant, row.name, row.prefix, row.created_at, row.last_used_at, row.revoked_at
    )
