"""`cairn fork` and `cairn diff` as a user types them, and `cairn status` showing a
map's elements in one line and a parent's children."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli.test_cli import cairn
from tests.support.stack import Stack
from worker.client import Client
from worker.settings import Settings

CHAIN = """
name: chain
steps:
  - {key: s1, task: t.write}
  - {key: s2, task: t.write, after: [s1]}
  - {key: s3, task: t.write, after: [s2]}
"""

MAPPED = """
name: mapped
steps:
  - {key: split, task: t.split}
  - key: each
    after: [split]
    map: {over: split.items, task: t.square, max_parallel: 4}
  - {key: sum, task: t.collect, after: [each]}
"""


# The CLI is a thin door; the verbs are tested on both databases.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_fork_and_diff(cli_stack: Stack, cli_settings: Settings, tmp_path: Path) -> None:
    spec = tmp_path / "chain.yaml"
    spec.write_text(CHAIN)
    started = cairn(cli_settings, "start", str(spec), "-i", "topic=cats", "--watch")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.splitlines()[0]
    forked = cairn(
        cli_settings, "fork", run_id, "--from", "s2", "--input", "topic=dogs",
        "--step-input", "s3.tone=loud", "--watch",
    )  # fmt: skip
    assert forked.returncode == 0, forked.stderr
    fork_id = forked.stdout.splitlines()[0]
    assert "forked from run " + run_id in forked.stdout
    assert "(reused)" in forked.stdout

    shown = cairn(cli_settings, "diff", run_id, fork_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "b was forked from a at step s2" in text
    assert '~ topic: "cats" -> "dogs"' in text
    assert "s1  same (reused, not run again)" in text
    assert '+ tone: "loud"' in text
    assert "~ note.txt: sha256 " in text
    as_json = json.loads(cairn(cli_settings, "diff", run_id, fork_id, "--json").stdout)
    assert [s["key"] for s in as_json["steps"] if s["verdict"] == "changed"] == ["s2", "s3"]

    bad = cairn(cli_settings, "fork", run_id, "--from", "s9")
    assert bad.returncode != 0
    assert "from_step" in bad.stderr
    assert "has no step 's9'" in bad.stderr


# The CLI is a thin door; the verbs are tested on both databases.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_status_shows_a_map_in_one_line(
    cli_stack: Stack, cli_settings: Settings, tmp_path: Path
) -> None:
    spec = tmp_path / "mapped.yaml"
    spec.write_text(MAPPED)
    started = cairn(cli_settings, "start", str(spec), "-i", "n=12", "--watch")
    assert started.returncode == 0, started.stderr
    assert "map of 12: 12 succeeded" in started.stdout
    assert "each[3]" not in started.stdout
    with Client(cli_settings) as client:
        run = client.get_run(started.stdout.splitlines()[0])
    assert len([s for s in run.steps if s.map_of == "each"]) == 12
