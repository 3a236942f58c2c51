"""Workflow definitions: versioned JSON specs, one row per (project, name, version)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin


class WorkflowDefinition(IdMixin, CreatedMixin, Base):
    """A workflow's DAG as validated JSON. The same spec (checksum) is the same version."""

    __tablename__ = "workflow_definitions"
    __table_args__ = (
        UniqueConstraint("project_id", "name", "version"),
        UniqueConstraint("project_id", "name", "checksum"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int]
    spec: Mapped[dict[str, Any]]
    #: sha256 of the canonical JSON of ``spec``.
    checksum: Mapped[str] = mapped_column(String(64))
