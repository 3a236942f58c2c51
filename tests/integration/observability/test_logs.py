"""CAIRN_LOG_FORMAT=json: a real worker logs one JSON object a line, and every line logged
in a step (the step's own loggers too) carries the run, the step and the attempt."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.stack import Stack
from worker.client import Client


def json_lines(stack: Stack) -> list[dict[str, Any]]:
    lines = []
    for path in stack.log_dir.glob("w*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    return lines


@pytest.mark.parametrize("backend", ["postgresql"])  # logging does not touch the database
def test_json_logs_carry_the_attempt_on_every_line(stack: Stack, client: Client) -> None:
    stack.start_worker(concurrency=1, env={"CAIRN_LOG_FORMAT": "json"})
    spec = {"name": "logs", "steps": [{"key": "say", "task": "t.logs"}]}
    run_id = client.start_run(spec=spec)
    assert client.wait(run_id, timeout=30).status == "succeeded"
    deadline = time.monotonic() + 10
    while True:
        mine = [line for line in json_lines(stack) if line.get("run_id") == str(run_id)]
        messages = {line["message"] for line in mine}
        if {"from ctx.log", "from my own logger", "step succeeded"} <= messages:
            break
        assert time.monotonic() < deadline, mine
        time.sleep(0.2)
    for line in mine:
        assert line["key"] == "say"
        assert line["attempt"] == 1
        assert {"time", "level", "logger", "message", "step_id"} <= set(line)
    own = next(line for line in mine if line["message"] == "from my own logger")
    assert (own["logger"], own["level"]) == ("user.steps", "WARNING")
