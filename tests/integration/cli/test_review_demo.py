"""The second demo (tasks/examples/review.yaml) as the README walks through it: a budget
pause raised by `cairn approvals approve --budget`, then the publish gate approved."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.integration.cli.test_cli import cairn
from tests.support.stack import ROOT, Stack
from worker.settings import Settings

STEPS = "tests.support.steps,tasks.examples"


def pending(settings: Settings) -> list[dict[str, Any]]:
    listed = cairn(settings, "approvals", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout))


def wait_pending(settings: Settings, kind: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [a for a in pending(settings) if a["kind"] == kind]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no pending {kind} request"
        time.sleep(0.3)


def test_review_demo_pauses_for_budget_then_waits_for_the_editor(
    cli_settings: Settings, tmp_path: Path
) -> None:
    stack = Stack(cli_settings, tmp_path, step_modules=STEPS)
    stack.start_worker(concurrency=1)
    try:
        spec = ROOT / "tasks" / "examples" / "review.yaml"
        started = cairn(
            cli_settings, "start", str(spec), "--budget", "1", "--no-check-steps", "--json"
        )
        assert started.returncode == 0, started.stderr
        run_id = json.loads(started.stdout)["run_id"]

        budget = wait_pending(cli_settings, "budget")
        status = cairn(cli_settings, "status", run_id)
        assert "paused" in status.stdout
        assert "run's budget of $1" in status.stdout
        events = cairn(cli_settings, "events", run_id).stdout
        assert "pause_run" in events
        assert "the run's budget of $1" in events  # the event log says why it paused
        assert "#None" not in events
        shown = json.loads(cairn(cli_settings, "status", run_id, "--json").stdout)
        assert Decimal(shown["cost_usd"]) == Decimal("1.2")  # four sections of $0.30
        refused = cairn(cli_settings, "approvals", "approve", budget["id"])
        assert refused.returncode == 1
        assert "--budget" in refused.stderr
        raised = cairn(cli_settings, "approvals", "approve", budget["id"], "--budget", "3")
        assert raised.returncode == 0, raised.stderr

        gate = wait_pending(cli_settings, "step")
        assert gate["title"] == "Publish the draft?"
        assert gate["group"] == "editors"
        show = cairn(cli_settings, "approvals", "show", gate["id"])
        assert "Publish the draft?" in show.stdout
        assert "step:publish" in show.stdout
        approved = cairn(
            cli_settings, "approvals", "approve", gate["id"], "--by", "ed", "-m", "ship it"
        )
        assert approved.stdout.strip() == "approved by ed"
        again = cairn(cli_settings, "approvals", "reject", gate["id"])
        assert again.returncode == 1
        assert "already approved by ed" in again.stderr

        watched = cairn(cli_settings, "watch", run_id, "--timeout", "60")
        assert watched.returncode == 0, watched.stdout + watched.stderr
        final = json.loads(cairn(cli_settings, "status", run_id, "--json").stdout)
        assert final["status"] == "succeeded"
        assert Decimal(final["cost_usd"]) == Decimal("1.5")  # no section paid twice
        assert final["steps"][1]["output"] == {"published": 5}
        decided = json.loads(
            cairn(cli_settings, "approvals", "list", "--status", "all", "--json").stdout
        )
        assert {a["status"] for a in decided} == {"approved"}
    finally:
        stack.stop()


def test_signal_and_limits_commands(cli_stack: Stack, cli_settings: Settings) -> None:
    spec = '{"name": "cli-listen", "steps": [{"key": "l", "task": "t.signal"}]}'
    started = cairn(cli_settings, "start", spec_file(cli_settings, spec), "--json")
    run_id = json.loads(started.stdout)["run_id"]
    sent = cairn(cli_settings, "signal", run_id, "go", "--payload", '{"ok": true}')
    assert sent.returncode == 0, sent.stderr
    assert cairn(cli_settings, "watch", run_id, "--timeout", "30").returncode == 0
    bad = cairn(cli_settings, "signal", run_id, "go", "--payload", "{nope")
    assert bad.returncode == 1
    assert "--payload" in bad.stderr

    set_ = cairn(cli_settings, "limits", "set", "--daily", "5")
    assert set_.returncode == 0
    assert "today: spent $0 of $5" in set_.stdout
    shown = json.loads(cairn(cli_settings, "limits", "show", "--json").stdout)
    assert shown["daily_limit_usd"] == "5"
    assert shown["monthly_limit_usd"] is None


def spec_file(settings: Settings, text: str) -> str:
    path = Path(settings.artifacts_dir).parent / "cli-listen.json"
    path.write_text(text)
    return str(path)
