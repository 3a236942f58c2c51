"""The declarative base: one MetaData with a constraint naming convention.

Named constraints make migrations deterministic on PostgreSQL and SQLite alike (batch
mode on SQLite needs names to drop or alter a constraint).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.types import JSONValue, UTCDateTime, utcnow
from worker.ids import new_id

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every cairn table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONValue,
        list[Any]: JSONValue,
    }


class IdMixin:
    """A UUIDv7 primary key, generated in Python so it is known before the INSERT."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-1)


class CreatedMixin:
    """The creation time, set by cairn's clock in UTC."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
