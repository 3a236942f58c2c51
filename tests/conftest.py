"""Shared fixtures: clean migrated databases on SQLite and the real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

import db.models  # noqa: F401  (registers every table)
from db import migrate
from db.session import make_engine
from tests.support import databases, servers
from worker.settings import Settings

#: The test session's own database (override to run two suites side by side).
PG_TEST_DB = os.environ.get("CAIRN_TEST_PG_DB", "cairn_test") + (
    f"_{servers.XDIST_WORKER}" if servers.XDIST_WORKER else ""
)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a PostgreSQL database migrated to head, private to this test session."""
    url = servers.recreate_pg_database(PG_TEST_DB)
    migrate.upgrade(databases.make_settings(url, Path("/nonexistent")))
    yield url
    servers.drop_pg_database(PG_TEST_DB)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, copied by each test that needs SQLite."""
    return databases.build_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings pointing at a clean, migrated database of the test's backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        return databases.make_settings(databases.fresh_sqlite(template, tmp_path), tmp_path)
    url: str = request.getfixturevalue("pg_url")
    result = databases.make_settings(url, tmp_path)
    databases.truncate_postgres(result)
    return result


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine on the test database, disposed after the test."""
    eng = make_engine(settings)
    yield eng
    eng.dispose()
