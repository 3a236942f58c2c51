"""The cairn command line against a real stack: JSON output parsed, exit codes checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from tests.support.stack import ROOT, Stack, stack_env
from worker.settings import Settings

SPEC = """
name: cli-demo
steps:
  - {key: a, task: t.increment}
  - {key: b, task: t.increment, after: [a]}
"""
FAILING = """
name: cli-fail
steps:
  - {key: bad, task: t.fatal}
"""


def cairn(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed ``cairn`` command with the stack's settings."""
    env = stack_env(settings)
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "cairn"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_start_watch_and_status(cli_stack: Stack, cli_settings: Settings, tmp_path: Path) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text(SPEC)
    started = cairn(cli_settings, "start", str(spec), "-i", "x=41", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]

    watched = cairn(cli_settings, "watch", run_id, "--timeout", "30")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "succeeded" in watched.stdout

    shown = cairn(cli_settings, "status", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["status"] == "succeeded"
    assert view["outputs"] == {"b": {"x": 43}}
    assert [s["key"] for s in view["steps"]] == ["a", "b"]


def test_watch_exit_code_is_the_outcome(
    cli_stack: Stack, cli_settings: Settings, tmp_path: Path
) -> None:
    spec = tmp_path / "fail.yaml"
    spec.write_text(FAILING)
    started = cairn(cli_settings, "start", str(spec), "--watch")
    assert started.returncode == 1, started.stdout + started.stderr
    assert "NonRetryableError" in started.stdout


def test_errors_are_one_line_without_traceback(cli_settings: Settings, tmp_path: Path) -> None:
    missing = cairn(cli_settings, "status", "01a203ca-e61f-7112-85b9-2e47ccd5828e")
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: run ")
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - {key: a, task: t.item, after: [nope]}\n")
    refused = cairn(cli_settings, "start", str(bad))
    assert refused.returncode == 1
    assert "steps[0].after[0]" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    env_bad = cli_settings.model_copy(update={"lease_s": 3.0})
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "cairn"), "migrate"],
        env={**stack_env(env_bad), "CAIRN_DB_POOL_SIZE": "-1"},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "CAIRN_DB_POOL_SIZE" in result.stderr


FLAKY = """
name: cli-retry
steps:
  - {key: a, task: t.increment}
  - {key: b, task: t.flaky, after: [a]}
"""


def test_definitions_and_every_read_command(
    cli_stack: Stack, cli_settings: Settings, tmp_path: Path
) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text(SPEC)
    first = cairn(cli_settings, "definitions", "register", str(spec), "--json")
    assert first.returncode == 0, first.stderr
    again = cairn(cli_settings, "definitions", "register", str(spec), "--json")
    assert json.loads(first.stdout)["version"] == json.loads(again.stdout)["version"] == 1
    listed = json.loads(cairn(cli_settings, "definitions", "list", "--json").stdout)
    assert [(d["name"], d["version"]) for d in listed] == [("cli-demo", 1)]
    shown = json.loads(cairn(cli_settings, "definitions", "show", "cli-demo", "--json").stdout)
    assert [s["key"] for s in shown["spec"]["steps"]] == ["a", "b"]

    started = cairn(cli_settings, "start", "cli-demo", "-i", "x=1", "--json", "--watch")
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = json.loads(started.stdout.split("\n}")[0] + "\n}")["run_id"]

    step_rows = json.loads(cairn(cli_settings, "steps", run_id, "--json").stdout)
    assert [(s["key"], s["status"]) for s in step_rows] == [("a", "succeeded"), ("b", "succeeded")]
    costs = json.loads(cairn(cli_settings, "costs", run_id, "--json").stdout)
    assert Decimal(costs["total_usd"]) == 0
    kinds = [e["kind"] for e in json.loads(cairn(cli_settings, "events", run_id, "--json").stdout)]
    assert kinds[0] == "start_run"
    assert kinds[-1] == "finish_run"
    listed_runs = json.loads(cairn(cli_settings, "runs", "--status", "succeeded", "--json").stdout)
    assert [r["id"] for r in listed_runs] == [run_id]


def test_retry_from_the_cli(cli_stack: Stack, cli_settings: Settings, tmp_path: Path) -> None:
    spec = tmp_path / "flaky.yaml"
    spec.write_text(FLAKY)
    started = cairn(cli_settings, "start", str(spec), "-i", "x=1", "-i", "fail_times=1", "--watch")
    assert started.returncode == 1, started.stdout + started.stderr
    run_id = started.stdout.splitlines()[0]
    retried = cairn(cli_settings, "retry", run_id)
    assert retried.returncode == 0, retried.stderr
    watched = cairn(cli_settings, "watch", run_id, "--timeout", "30")
    assert watched.returncode == 0, watched.stdout + watched.stderr


def test_costs_by_model_over_all_runs(
    cli_stack: Stack, cli_settings: Settings, tmp_path: Path
) -> None:
    spec = tmp_path / "paid.yaml"
    spec.write_text("name: paid\nsteps:\n  - {key: work, task: t.loop}\n")
    for _ in range(2):
        started = cairn(
            cli_settings, "start", str(spec), "-i", "iterations=2", "-i", "pause_s=0", "--watch"
        )
        assert started.returncode == 0, started.stdout + started.stderr
    totals = json.loads(cairn(cli_settings, "costs", "--by", "model", "--json").stdout)
    assert [(t["provider"], t["model"], t["records"]) for t in totals] == [
        ("openai", "gpt-test", 4)
    ]
    assert Decimal(totals[0]["usd"]) == Decimal("0.04")
    refused = cairn(cli_settings, "costs")
    assert refused.returncode == 1
    assert "--by model" in refused.stderr


def test_artifact_commands(cli_stack: Stack, cli_settings: Settings, tmp_path: Path) -> None:
    init = cairn(cli_settings, "artifacts", "init")
    assert init.returncode == 0, init.stderr
    assert "ready" in init.stdout
    spec = tmp_path / "art.yaml"
    spec.write_text("name: art\nsteps:\n  - {key: make, task: t.artifact}\n")
    started = cairn(cli_settings, "start", str(spec), "-i", "text=hello file", "--watch")
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = started.stdout.splitlines()[0]
    listed = json.loads(cairn(cli_settings, "artifacts", "list", run_id, "--json").stdout)
    assert [(a["name"], a["step_key"], a["size"]) for a in listed] == [("out.txt", "make", 10)]
    target = tmp_path / "copy.txt"
    got = cairn(cli_settings, "artifacts", "get", run_id, "out.txt", "-o", str(target))
    assert got.returncode == 0, got.stderr
    assert target.read_text() == "hello file"
    url = cairn(cli_settings, "artifacts", "url", run_id, "out.txt")
    assert url.returncode == 1
    assert "presigned URLs need the s3 artifact backend" in url.stderr
