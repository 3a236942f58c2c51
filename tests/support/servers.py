"""Where the test servers are, and the loud failure when one is missing.

A test that needs PostgreSQL or Redis fails (never skips) when the server does not
answer, with the command that starts it.
"""

from __future__ import annotations

import os

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

#: Admin connection used to create and drop the test databases.
PG_ADMIN_URL = os.environ.get(
    "CAIRN_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
#: Which pytest-xdist worker this process is ("gw0", "gw1", ...), or "" without xdist.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_XDIST_INDEX = int(XDIST_WORKER[2:]) if XDIST_WORKER.startswith("gw") else 0


def _per_worker_redis(url: str) -> str:
    """Each xdist worker gets its own Redis database index: 13, 12, 11 ... down from ``url``'s."""
    base, _, index = url.rpartition("/")
    return f"{base}/{int(index) - _XDIST_INDEX}" if index.isdigit() else url


#: A dedicated Redis database index, emptied before and after the suite.
REDIS_URL = _per_worker_redis(os.environ.get("CAIRN_TEST_REDIS_URL", "redis://127.0.0.1:6379/13"))

PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"


def pg_url(database: str) -> str:
    """The admin URL pointed at ``database``."""
    return make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def recreate_pg_database(name: str) -> str:
    """Drop and create the PostgreSQL database ``name``; return its URL. Fails loudly."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {make_url(PG_ADMIN_URL).render_as_string()}: "
            f"{exc.orig}. Start it with: {PG_START}",
            pytrace=False,
        )
    finally:
        admin.dispose()
    return pg_url(name)


def drop_pg_database(name: str) -> None:
    """Drop the PostgreSQL database ``name`` if it exists."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def redis_client() -> redis.Redis:
    """A client of the test Redis database; fails the test loudly when Redis is down."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}. Start it with: {REDIS_START}")
    return client
