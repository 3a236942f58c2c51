"""API keys of the HTTP API: one tenant each, stored as a prefix and a hash, never the key."""

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
