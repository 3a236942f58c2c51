"""What every repository shares: a caller's session and the tenant it acts for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Tenant


@dataclass(frozen=True, slots=True)
class TenantRepository:
    """A repository bound to one session and one tenant.

    Every query it runs filters by ``tenant_id``; an object of another tenant looks
    exactly like a missing one. It never commits: the caller owns the transaction.
    """

    session: Session
    tenant_id: uuid.UUID


def ensure_tenant(session: Session, name: str) -> Tenant:
    """The tenant called ``name``, created when missing (flushed, not committed)."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def find_tenant(session: Session, name: str) -> Tenant | None:
    """The tenant called ``name``, or None."""
    return session.scalar(select(Tenant).where(Tenant.name == name))
