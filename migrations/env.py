"""Alembic environment: the URL comes from cairn's settings (CAIRN_DATABASE_URL).

``cairn migrate`` passes its Settings object in ``config.attributes["settings"]``; the
plain ``alembic`` command builds them from the environment and ``.env``. SQLite runs in
batch mode so ALTERs work there too. With CAIRN_DB_SCHEMA the connection's search_path
points at that schema, so every table, alembic_version included, lands there unqualified.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

import db.models  # noqa: F401  (registers every table on the metadata)
from db.base import Base
from db.session import check_connection, make_engine
from worker.settings import Settings, get_settings

config = context.config
settings: Settings = config.attributes.get("settings") or get_settings()


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=settings.database_url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=settings.is_sqlite,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations against the database, in one transaction."""
    engine = make_engine(settings)
    check_connection(engine, settings.safe_database_url)
    try:
        with engine.connect() as connection:
            if settings.db_schema and not settings.is_sqlite:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{settings.db_schema}"'))
                connection.commit()
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=settings.is_sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
