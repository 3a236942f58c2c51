"""API keys of the HTTP API (one tenant each) and the dashboard sessions made from them,
both stored as a prefix and a hash, never the secret."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin


class ApiKey(IdMixin, CreatedMixin, Base):
    """A key a service sends as ``Authorization: Bearer``; it names the tenant."""

    __tablename__ = "api_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    #: The public part of the key: finds the row, shows in lists.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    #: sha256 of the whole key. The secret is 32 random bytes, so a fast hash is right
    #: (nothing to brute-force, as with GitHub's and Stripe's tokens); a slow password
    #: hash would cost every request ~100 ms for no gain.
    secret_hash: Mapped[str] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class DashboardSession(IdMixin, CreatedMixin, Base):
    """A dashboard login: a random token in the browser's cookie, never the API key.

    Made from a valid key, it ends at ``expires_at``, at logout (the row is deleted), or
    when its key is revoked or deleted. Stored like a key: a public prefix and a hash.
    """

    __tablename__ = "dashboard_sessions"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    #: Expired rows are deleted at the next login and by beat's retention.
    expires_at: Mapped[datetime] = mapped_column(index=True)
