"""run_transaction against a real PostgreSQL whose connections are cut on the wire."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Tenant
from db.session import make_engine, run_transaction
from db.types import utcnow
from tests.integration.faults.conftest import through
from tests.support.proxy import Proxy
from worker.errors import DatabaseUnavailable
from worker.settings import Settings


@pytest.fixture
def proxied(settings: Settings, pg_proxy: Proxy) -> Iterator[Engine]:
    """An engine whose every connection goes through the proxy."""
    engine = make_engine(settings.model_copy(update={"database_url": through(settings, pg_proxy)}))
    yield engine
    engine.dispose()


def _tenants(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).where(Tenant.name == name)) or 0)


def _insert(session: Session, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
    session.execute(insert(Tenant).values(id=tenant_id, name=name, created_at=utcnow()))
    return tenant_id


def test_a_connection_cut_mid_transaction_is_run_again(
    proxied: Engine, pg_proxy: Proxy, engine: Engine
) -> None:
    tries = []

    def work(session: Session) -> uuid.UUID:
        tries.append(1)
        session.execute(select(1))
        if len(tries) == 1:
            assert pg_proxy.cut() >= 1
        return _insert(session, uuid.uuid4(), "cut-mid-transaction")

    run_transaction(proxied, work, retry_for_s=10)
    assert len(tries) == 2
    assert _tenants(engine, "cut-mid-transaction") == 1


def test_a_commit_whose_reply_was_lost_is_resolved_by_reading_it_back(
    proxied: Engine, pg_proxy: Proxy, engine: Engine
) -> None:
    tenant_id, tries = uuid.uuid4(), []

    def work(session: Session) -> uuid.UUID:
        tries.append(1)
        return _insert(session, tenant_id, "ambiguous-commit")

    def verify(session: Session) -> uuid.UUID | None:
        return session.scalar(select(Tenant.id).where(Tenant.id == tenant_id))

    run_transaction(proxied, lambda s: s.execute(select(1)), retry_for_s=5)  # warm the pool
    pg_proxy.drop_reply_to(b"COMMIT")
    assert run_transaction(proxied, work, verify=verify, retry_for_s=10) == tenant_id
    assert pg_proxy.dropped_replies == 1
    assert len(tries) == 1, "the work ran once: the commit was found, not written twice"
    assert _tenants(engine, "ambiguous-commit") == 1


def test_without_verify_the_lost_commit_had_landed(
    proxied: Engine, pg_proxy: Proxy, engine: Engine
) -> None:
    """The control: the second try of a blind insert meets the first one's committed row."""
    tenant_id = uuid.uuid4()
    run_transaction(proxied, lambda s: s.execute(select(1)), retry_for_s=5)
    pg_proxy.drop_reply_to(b"COMMIT")
    with pytest.raises(IntegrityError):
        run_transaction(proxied, lambda s: _insert(s, tenant_id, "blind"), retry_for_s=10)
    assert _tenants(engine, "blind") == 1


def test_a_database_away_past_the_bound_is_a_server_fault(
    proxied: Engine, pg_proxy: Proxy, settings: Settings
) -> None:
    pg_proxy.refuse(True)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        run_transaction(proxied, lambda s: _insert(s, uuid.uuid4(), "never"), retry_for_s=1.0)
    assert time.monotonic() - started < 15
    assert caught.value.server == "the database"
    for secret in settings.secret_values():
        assert secret not in str(caught.value)
