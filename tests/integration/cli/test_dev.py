"""The README's run command: ``cairn dev --demo`` completes the demo and leaves nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import redis

from tests.support.stack import ROOT


def test_dev_demo_runs_on_a_private_redis_and_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CAIRN_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "cairn"),
            "dev",
            "--demo",
            "--private-redis",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"run \S+: succeeded", output), output
    assert "demo-llm/tiny-1: 5 calls" in output
    assert re.search(r"artifact report\.md from combine: \d+ bytes", output), output
    assert list((tmp_path / "cairn-artifacts").rglob("report.md"))
    assert "Flower: http://127.0.0.1:" in output
    assert "HTTP API: http://127.0.0.1:" in output  # printed once /healthz answered
    assert "all processes stopped" in output

    pids = [int(p) for p in re.findall(r"started \w+ \(pid (\d+)", output)]
    assert len(pids) == 5  # redis, worker, beat, flower, api
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} is still running")
    broker = re.search(r"broker redis://127\.0\.0\.1:(\d+)/0", output)
    assert broker is not None, output
    probe = redis.Redis(host="127.0.0.1", port=int(broker.group(1)), socket_connect_timeout=1)
    try:
        probe.ping()
    except redis.ConnectionError:
        pass
    else:
        raise AssertionError("the private Redis is still answering")
    assert (tmp_path / "cairn.db").exists()
