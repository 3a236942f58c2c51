"""API keys: made, listed, revoked and checked; the key itself is never stored or logged.

A key reads ``cairn_<prefix>_<secret>``. The prefix (8 characters) is public: it finds the
row and names the key in lists. The database keeps the sha256 of the whole key; a
request's key is hashed and compared in constant time. Functions take the caller's
session and never commit.

A dashboard login turns a valid key into a session, ``cairnui_<prefix>_<secret>``, stored
the same way: the browser's cookie holds that, never the key, so a cookie read off a
machine opens the dashboard until it expires or its owner logs out, and cannot be sent as
a key. Revoking the key ends its sessions.
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

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from db.models import ApiKey, DashboardSession, Tenant
from db.repositories import ensure_tenant, find_tenant
from worker import limits
from worker.errors import NotFound

_TOKEN = re.compile(r"cairn_([a-z2-7]{8})_([A-Za-z0-9_-]{43})")
_SESSION_TOKEN = re.compile(r"cairnui_([a-z2-7]{8})_([A-Za-z0-9_-]{43})")
#: A dashboard session lasts a working day; logging out or revoking the key ends it sooner.
SESSION_TTL = timedelta(hours=12)
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
    prefix, token = _new_token("cairn")
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
    _touch(session, key_id, last_used_at, now)
    return Principal(tenant.id, tenant.name, key_id)


def open_session(session: Session, principal: Principal, now: datetime) -> str:
    """A new dashboard session of ``principal``'s key, until ``now + SESSION_TTL``: its
    token, for the cookie. Sessions already expired are deleted on the way."""
    delete_expired_sessions(session, now)
    prefix, token = _new_token("cairnui")
    session.add(
        DashboardSession(
            api_key_id=principal.key_id,
            prefix=prefix,
            secret_hash=hash_secret(token),
            created_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    session.flush()
    return token


def delete_expired_sessions(session: Session, now: datetime) -> int:
    """Delete the dashboard sessions expired at ``now``; return how many (beat's
    retention calls this, so a dashboard nobody logs in to again keeps no dead rows)."""
    done = session.execute(delete(DashboardSession).where(DashboardSession.expires_at <= now))
    return int(done.rowcount)  # type: ignore[attr-defined]


def authenticate_session(session: Session, token: str, now: datetime) -> Principal | None:
    """The tenant of a live dashboard session whose key is not revoked; None otherwise."""
    match = _SESSION_TOKEN.fullmatch(token)
    if match is None:
        return None
    found = session.execute(
        select(
            DashboardSession.secret_hash,
            DashboardSession.expires_at,
            ApiKey.id,
            ApiKey.revoked_at,
            ApiKey.last_used_at,
            Tenant,
        )
        .join(ApiKey, ApiKey.id == DashboardSession.api_key_id)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(DashboardSession.prefix == match.group(1))
    ).first()
    if found is None:
        return None
    stored, expires_at, key_id, revoked_at, last_used_at, tenant = found
    if not hmac.compare_digest(stored, hash_secret(token)):
        return None
    if revoked_at is not None or expires_at <= now:
        return None
    _touch(session, key_id, last_used_at, now)
    return Principal(tenant.id, tenant.name, key_id)


def close_session(session: Session, token: str) -> bool:
    """End the dashboard session ``token`` (logout); whether there was one."""
    match = _SESSION_TOKEN.fullmatch(token)
    if match is None:
        return False
    result = session.execute(
        delete(DashboardSession).where(
            DashboardSession.prefix == match.group(1),
            DashboardSession.secret_hash == hash_secret(token),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _new_token(kind: str) -> tuple[str, str]:
    """A fresh ``(prefix, token)``: 8 base32 characters (40 bits, unique by the table's
    index: a clash is one failed insert) and 32 random bytes of secret."""
    prefix = base64.b32encode(secrets.token_bytes(5)).decode().lower()
    return prefix, f"{kind}_{prefix}_{secrets.token_urlsafe(32)}"


def _touch(
    session: Session, key_id: uuid.UUID, last_used_at: datetime | None, now: datetime
) -> None:
    """Write the key's ``last_used_at``, at most once a minute."""
    if last_used_at is None or now - last_used_at >= _TOUCH_EVERY:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def _view(row: ApiKey, tenant: str) -> ApiKeyView:
    return ApiKeyView(
        row.id, tenant, row.name, row.prefix, row.created_at, row.last_used_at, row.revoked_at
    )
