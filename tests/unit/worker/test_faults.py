"""Whose fault is it: pure classification and the release policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from worker.errors import (
    ArtifactStoreUnavailable,
    BrokerUnavailable,
    DatabaseUnavailable,
    ServerUnavailable,
)
from worker.faults import server_fault
from worker.machine.retry import RELEASE_BACKOFF_MAX_S, decide_release

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_a_step_error_is_the_steps_own() -> None:
    assert server_fault(ValueError("bad input")) is None


@pytest.mark.parametrize(
    ("error", "server"),
    [
        (DatabaseUnavailable("down"), "the database"),
        (ArtifactStoreUnavailable("down"), "the artifact store"),
        (BrokerUnavailable("down"), "the broker"),
    ],
)
def test_cairns_server_errors_are_server_faults(error: ServerUnavailable, server: str) -> None:
    found = server_fault(error)
    assert found is error
    assert found.server == server


def test_a_server_fault_wrapped_by_the_step_is_still_found() -> None:
    outer = RuntimeError("could not save the report")
    outer.__cause__ = ArtifactStoreUnavailable("S3 gone")
    assert isinstance(server_fault(outer), ArtifactStoreUnavailable)


def test_a_lost_connection_from_sqlalchemy_is_a_database_fault() -> None:
    lost = OperationalError("COMMIT", {}, psycopg2.OperationalError("server closed the connection"))
    fault = server_fault(lost)
    assert isinstance(fault, DatabaseUnavailable)
    assert "server closed the connection" in str(fault)


def test_a_constraint_violation_is_not_a_server_fault() -> None:
    assert server_fault(IntegrityError("INSERT", {}, Exception("duplicate key"))) is None


def test_release_backs_off_and_is_capped() -> None:
    rand = random.Random(1)
    waits = [decide_release(n, 100, NOW, rand).next_attempt_at for n in range(12)]
    assert all(w is not None for w in waits)
    delays = [(w - NOW).total_seconds() for w in waits if w is not None]
    assert delays[0] <= 0.5
    assert max(delays) <= RELEASE_BACKOFF_MAX_S
    assert delays[-1] >= RELEASE_BACKOFF_MAX_S / 2


def test_release_gives_up_at_the_bound() -> None:
    assert decide_release(2, 3, NOW).retry
    assert not decide_release(3, 3, NOW).retry
    assert decide_release(0, 1, NOW).next_attempt_at is not None
    assert decide_release(0, 1, NOW).next_attempt_at <= NOW + timedelta(seconds=0.5)  # type: ignore[operator]
