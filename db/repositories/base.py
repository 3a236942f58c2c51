"""What every repository shares: a caller's session and the tenant it acts for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Tenant
from db.session import upsert


@dataclass(frozen=True, slots=True)
class TenantRepository:
    """A repository bound to one session and one tenant.

    Every query it runs filters by ``tenant_id``; an object of another tenant looks
    exactly like a missing one. It never commits: the caller owns the transaction.
    """

    session: Session
    tenant_id: uuid.UUID


def ensure_tenant(session: Session, name: str) -> Tenant:
    """The tenant called ``name``, created when missing (not committed).

    Concurrent callers creating one tenant do not fail: the INSERT that loses the race on
    the unique name inserts nothing, and the winner's row is read.
    """
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        conn = session.connection()
        conn.execute(upsert(conn, Tenant).values(name=name).on_conflict_do_nothing())
        tenant = session.scalars(select(Tenant).where(Tenant.name == name)).one()
    return tenant


def find_tenant(session: Session, name: str) -> Tenant | None:
    """The tenant called ``name``, or None."""
    return session.scalar(select(Tenant).where(Tenant.name == name))
