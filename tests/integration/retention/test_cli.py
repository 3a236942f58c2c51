"""``cairn runs delete`` and ``cairn runs purge`` as a user runs them: real subprocesses on
SQLite and PostgreSQL; refusals are one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.retention.world import PARKED, age, owned_rows, step_ids_of
from tests.support.stack import ROOT, stack_env
from worker.client import Client
from worker.errors import NotFound
from worker.settings import Settings


def cairn(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "cairn"), *args],
        cwd=ROOT,
        env=stack_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def cli_client(stack_settings: Settings) -> Iterator[Client]:
    with Client(stack_settings) as c:
        yield c


def ended_run(client: Client) -> uuid.UUID:
    """A run that ended (cancelled while queued on a queue nobody consumes)."""
    run_id = client.start_run(spec=PARKED)
    assert client.cancel(run_id)
    return run_id


def test_delete_removes_an_ended_run_and_refuses_one_that_has_not_ended(
    cli_client: Client, stack_settings: Settings
) -> None:
    engine = cli_client.runtime.engine
    done = ended_run(cli_client)
    waiting = cli_client.start_run(spec=PARKED)  # queued: has not ended
    steps = step_ids_of(engine, [done])

    refused = cairn(stack_settings, "runs", "delete", str(waiting))
    one_line_error(refused, str(waiting), "queued", "cancel it first")
    assert cli_client.get_run(waiting).status == "queued"

    result = cairn(stack_settings, "runs", "delete", str(done))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"run {done} deleted"
    assert set(owned_rows(engine, [done], steps).values()) == {0}
    with pytest.raises(NotFound):
        cli_client.get_run(done)
    one_line_error(cairn(stack_settings, "runs", "delete", str(done)), "not found")

    other = Client(stack_settings, tenant="someone-else")
    try:
        with pytest.raises(NotFound):  # tenant-scoped: another tenant's run is not found
            other.delete_run(waiting)
    finally:
        other.close()


def test_purge_older_than_deletes_only_old_ended_runs(
    cli_client: Client, stack_settings: Settings
) -> None:
    engine = cli_client.runtime.engine
    old = [ended_run(cli_client) for _ in range(3)]
    recent = ended_run(cli_client)
    waiting = cli_client.start_run(spec=PARKED)
    for run_id in [*old, waiting]:
        age(engine, run_id, 40)  # the waiting run's stale finished_at must not matter

    dry = cairn(stack_settings, "runs", "purge", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "3 run(s) would be deleted"
    assert len(cli_client.list_runs()) == 5

    result = cairn(stack_settings, "runs", "purge", "--older-than", "30d")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3 run(s) deleted"
    assert {r.id for r in cli_client.list_runs()} == {recent, waiting}

    again = cairn(stack_settings, "runs", "purge", "--older-than", "12h")
    assert again.stdout.strip() == "0 run(s) deleted"


@pytest.mark.parametrize("bad", ["30", "abc", "3x", "-1d", "0d", "1e9999d", "99999999999w"])
def test_a_malformed_duration_is_one_line(stack_settings: Settings, bad: str) -> None:
    one_line_error(cairn(stack_settings, "runs", "purge", "--older-than", bad), "--older-than")
