"""Migrated test databases: one PostgreSQL database and one SQLite template per session.

Each test gets a clean database: the SQLite template file is copied, the PostgreSQL
tables are truncated. Both were built by the migrations, never by ``create_all``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import text

from db import migrate
from db.base import Base
from db.session import make_engine
from worker.settings import Settings


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a test: the given database, short leases, a private artifacts folder."""
    values: dict[str, object] = {
        "database_url": database_url,
        "artifacts_dir": tmp_path / "artifacts",
        "lease_s": 3.0,
        "redispatch_after_s": 3.0,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def build_sqlite_template(folder: Path) -> Path:
    """Migrate a fresh SQLite file to head; tests copy it."""
    path = folder / "template.db"
    migrate.upgrade(make_settings(f"sqlite:///{path}", folder))
    return path


def fresh_sqlite(template: Path, folder: Path) -> str:
    """A copy of the migrated template for one test; returns its URL."""
    path = folder / "cairn.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def truncate_postgres(settings: Settings) -> None:
    """Empty every cairn table of the PostgreSQL test database."""
    engine = make_engine(settings)
    try:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    finally:
        engine.dispose()
