"""Bad CAIRN_* values stop ``cairn worker`` and ``cairn beat`` at once, in one line
naming the variable, never echoing a secret; a secret in a step's exception never
reaches the worker's log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import ROOT, Stack, stack_env
from worker.client import Client
from worker.settings import Settings

SECRET = "s3cr3t-Pa55"

#: variable -> value, and which commands must refuse it.
BAD = [
    ("CAIRN_LEASE_S", "inf", ("worker", "beat")),
    ("CAIRN_REDISPATCH_AFTER_S", "inf", ("worker", "beat")),
    ("CAIRN_RETENTION_INTERVAL_S", "inf", ("worker", "beat", "status")),
    ("CAIRN_DB_POOL_TIMEOUT_S", "inf", ("worker", "beat")),
    ("CAIRN_RUN_RETENTION_DAYS", "nan", ("worker", "beat")),
    ("CAIRN_ARTIFACTS_DIR", "{file}/below", ("worker", "beat")),
    ("CAIRN_DATABASE_URL", "sqlite:////nonexistent-cairn/dir/c.db", ("worker", "beat")),
    ("CAIRN_DATABASE_URL", f"postgresql+nodriver://u:{SECRET}@localhost/db", ("worker", "beat")),
    # A dialect SQLAlchemy knows whose driver is not installed (pg8000 is in no extra).
    ("CAIRN_DATABASE_URL", f"postgresql+pg8000://u:{SECRET}@localhost/db", ("worker", "beat")),
    ("CAIRN_S3_BUCKET", "Not_A_Bucket", ("worker", "beat")),
    ("CAIRN_S3_ENDPOINT_URL", "ftp://nowhere", ("worker", "beat")),
    ("CAIRN_STEP_MODULES", "no.such.module", ("worker",)),
]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("variable", "value", "commands"), BAD, ids=[f"{b[0]}={b[1][:20]}" for b in BAD]
)
def test_a_bad_value_refuses_to_start_in_one_line(
    settings: Settings, tmp_path: Path, variable: str, value: str, commands: tuple[str, ...]
) -> None:
    (tmp_path / "afile").write_text("")
    env = stack_env(settings)
    env[variable] = value.format(file=tmp_path / "afile")
    if variable.startswith("CAIRN_S3_"):
        env.update(CAIRN_ARTIFACT_BACKEND="s3", CAIRN_S3_ENDPOINT_URL="http://127.0.0.1:9")
        env[variable] = value
    cairn = os.path.join(os.path.dirname(sys.executable), "cairn")
    for command in commands:
        args = (
            [command, "0190a5b4-0000-7000-8000-000000000001"] if command == "status" else [command]
        )
        result = subprocess.run(
            [cairn, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        err = result.stderr.strip()
        assert result.returncode == 1, (command, err, result.stdout[-500:])
        assert len(err.splitlines()) == 1, err
        assert variable in err, err
        assert SECRET not in err + result.stdout


def test_a_secret_in_a_steps_exception_never_reaches_the_log(
    stack: Stack, client: Client, stack_settings: Settings
) -> None:
    worker = stack.start_worker(env={"CAIRN_S3_SECRET_KEY": SECRET, "CAIRN_S3_ACCESS_KEY": "ak"})
    run_id = client.start_run(
        spec={"name": "leak", "steps": [{"key": "s", "task": "t.leak"}]}, inputs={"secret": SECRET}
    )
    view = client.wait(run_id, timeout=60)
    assert view.status == "failed"
    stack.stop()
    log = worker.log.read_text(errors="replace")
    assert "step failed" in log
    assert SECRET not in log
