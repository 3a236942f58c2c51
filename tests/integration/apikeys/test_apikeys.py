"""API keys on SQLite and PostgreSQL: made, checked, listed, revoked; stored only hashed;
and ``cairn api-keys`` and ``cairn api`` as a user runs them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from db.models import ApiKey, DashboardSession
from db.session import run_transaction, transaction
from db.types import utcnow
from tests.integration.cli.test_cli import cairn
from worker.apikeys import (
    SESSION_TTL,
    authenticate,
    authenticate_session,
    create_key,
    list_keys,
    open_session,
    revoke_key,
)
from worker.client import Client
from worker.errors import DefinitionError, NotFound
from worker.maintenance import purge_expired_sessions
from worker.settings import Settings


def make(engine: Engine, tenant: str = "acme", name: str = "svc") -> tuple[str, str]:
    view, token = run_transaction(engine, lambda s: create_key(s, tenant, name, utcnow()))
    return str(view.id), token


def check(engine: Engine, token: str) -> str | None:
    found = run_transaction(engine, lambda s: authenticate(s, token, utcnow()))
    return found.tenant if found else None


def test_a_key_names_its_tenant_and_nothing_else_passes(engine: Engine) -> None:
    _, token = make(engine, "acme")
    _, other = make(engine, "globex")
    assert check(engine, token) == "acme"
    assert check(engine, other) == "globex"
    _, prefix, secret = token.split("_", 2)  # the secret itself may hold "_"
    assert check(engine, f"cairn_{prefix}_{'x' * len(secret)}") is None  # wrong secret
    assert check(engine, f"cairn_zzzzzzzz_{secret}") is None  # unknown prefix
    assert check(engine, token[:-1]) is None  # malformed
    assert check(engine, "") is None


def test_the_database_never_holds_the_key(engine: Engine) -> None:
    _, token = make(engine)
    with transaction(engine) as session:
        row = session.scalars(select(ApiKey)).one()
        stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    secret = token.split("_", 2)[2]
    assert not any(secret in value or token in value for value in stored)


def test_list_and_revoke_by_id_or_prefix(engine: Engine) -> None:
    first_id, first = make(engine, name="one")
    _, second = make(engine, name="two")
    with transaction(engine) as session:
        listed = list_keys(session, "acme")
    assert [k.name for k in listed] == ["one", "two"]
    assert all(not hasattr(k, "secret_hash") for k in listed)
    run_transaction(engine, lambda s: revoke_key(s, "acme", first_id, utcnow()))
    assert check(engine, first) is None
    prefix = second.split("_")[1]
    revoked = run_transaction(engine, lambda s: revoke_key(s, "acme", prefix, utcnow()))
    assert revoked.revoked_at is not None
    assert check(engine, second) is None
    # Revoking again keeps the first time.
    again = run_transaction(engine, lambda s: revoke_key(s, "acme", prefix, utcnow()))
    assert again.revoked_at == revoked.revoked_at


def test_another_tenant_cannot_revoke(engine: Engine) -> None:
    key_id, token = make(engine, "acme")
    make(engine, "globex")
    with pytest.raises(NotFound):
        run_transaction(engine, lambda s: revoke_key(s, "globex", key_id, utcnow()))
    with pytest.raises(NotFound):
        run_transaction(engine, lambda s: revoke_key(s, "nobody", key_id, utcnow()))
    assert check(engine, token) == "acme"


def test_last_use_is_written_once_a_minute(engine: Engine) -> None:
    _, token = make(engine)
    now = utcnow()
    run_transaction(engine, lambda s: authenticate(s, token, now))
    run_transaction(engine, lambda s: authenticate(s, token, now + timedelta(seconds=30)))
    with transaction(engine) as session:
        assert session.scalars(select(ApiKey.last_used_at)).one() == now
    later = now + timedelta(seconds=61)
    run_transaction(engine, lambda s: authenticate(s, token, later))
    with transaction(engine) as session:
        assert session.scalars(select(ApiKey.last_used_at)).one() == later


def test_bad_names_are_refused(engine: Engine) -> None:
    with pytest.raises(DefinitionError, match="tenant"):
        make(engine, tenant="")
    with pytest.raises(DefinitionError, match="name"):
        make(engine, name="x" * 1000)


def test_cli_create_list_revoke(settings: Settings, engine: Engine) -> None:
    made = cairn(settings, "api-keys", "create", "--tenant", "acme", "--name", "billing")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "cannot be shown again" in made.stderr
    assert check(engine, token) == "acme"
    listed = cairn(settings, "api-keys", "list", "--tenant", "acme", "--json")
    keys = json.loads(listed.stdout)
    assert [(k["name"], k["revoked_at"]) for k in keys] == [("billing", None)]
    assert token.split("_", 2)[2] not in listed.stdout
    as_json = json.loads(cairn(settings, "api-keys", "create", "--tenant", "acme", "--json").stdout)
    assert as_json["token"].startswith(f"cairn_{as_json['prefix']}_")
    revoked = cairn(settings, "api-keys", "revoke", keys[0]["prefix"], "--tenant", "acme")
    assert revoked.returncode == 0, revoked.stderr
    assert check(engine, token) is None
    missing = cairn(settings, "api-keys", "revoke", "nope", "--tenant", "acme")
    assert missing.returncode == 1
    assert "no API key 'nope'" in missing.stderr


def test_cairn_api_refuses_to_listen_off_loopback_without_tls(settings: Settings) -> None:
    refused = cairn(settings, "api", "--host", "0.0.0.0", "--port", "1")
    assert refused.returncode == 1
    assert "CAIRN_API_BEHIND_TLS_PROXY" in refused.stderr


def test_retention_deletes_expired_dashboard_sessions_only(
    settings: Settings, engine: Engine
) -> None:
    """A dashboard nobody logs in to again keeps no dead session rows: beat's retention
    deletes the expired ones and leaves the live one working."""
    _, token = make(engine)
    principal = run_transaction(engine, lambda s: authenticate(s, token, utcnow()))
    assert principal is not None
    # (A login deletes expired sessions too: the live one is opened first.)
    live = run_transaction(engine, lambda s: open_session(s, principal, utcnow()))
    long_ago = utcnow() - SESSION_TTL - timedelta(minutes=1)
    for _ in range(2):
        run_transaction(engine, lambda s: open_session(s, principal, long_ago))
    with Client(settings) as client:
        assert purge_expired_sessions(client.runtime) == 2
        assert purge_expired_sessions(client.runtime) == 0
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(DashboardSession)) == 1
    found = run_transaction(engine, lambda s: authenticate_session(s, live, utcnow()))
    assert found is not None
    assert found.tenant == "acme"
