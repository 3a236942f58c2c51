"""Tenants and their projects: the outer boundary every query is scoped by."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin


class Tenant(IdMixin, CreatedMixin, Base):
    """An organisation or team; sees only its own projects, runs, artifacts and costs."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: Spend limits over all the tenant's runs, per UTC day and month: a run whose costs
    #: would cross one pauses (see worker/machine/budgets.py). None: no limit.
    daily_limit_usd: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    monthly_limit_usd: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    #: Steps of the tenant running at once, at most (None: no quota).
    max_running_steps: Mapped[int | None]


class Project(IdMixin, CreatedMixin, Base):
    """A namespace for workflow definitions and their runs inside a tenant."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
