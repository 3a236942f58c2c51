"""Flow control from the CLI: a tenant's quota of running steps, a run's priority."""

from __future__ import annotations

from tests.integration.cli.test_cli import cairn
from worker.settings import Settings


def test_the_cli_sets_and_shows_the_quota(cli_settings: Settings) -> None:
    done = cairn(cli_settings, "limits", "quota", "5")
    assert done.returncode == 0, done.stderr
    assert "at most 5 steps running at once" in done.stdout
    assert "at most 5" in cairn(cli_settings, "limits", "quota").stdout
    assert "no quota" in cairn(cli_settings, "limits", "quota", "--clear").stdout
    bad = cairn(cli_settings, "limits", "quota", "0")
    assert bad.returncode != 0
    assert "max_running_steps" in bad.stderr
