"""The benchmark's smoke run, so the benchmark cannot rot: real servers, real workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_bench_smoke_runs_and_reports_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    workloads = {f["workload"].split(" ")[0].rstrip(",") for f in data["figures"]}
    assert workloads == {
        "sequential", "throughput", "fan-out", "map", "status", "HTTP", "enqueuers",
        "recovery",
    }  # fmt: skip
    for figure in data["figures"]:
        if figure["variant"].startswith(("cairn", "dbos")):
            assert figure["samples"], figure
            assert all(v > 0 for v in figure["samples"]), figure
    assert any(f["variant"] == "dbos" for f in data["figures"])
    for name in ("sequential", "throughput", "fan-out", "status read", "HTTP", "enqueuers"):
        assert name in done.stdout
    ratio_names = [r["workload"] for r in data["ratios"]]
    assert any("recovery" in r for r in ratio_names)
    assert any("throughput" in r for r in ratio_names)
    assert any("inline / dbos" in r for r in ratio_names)
    assert any("HTTP status read" in r for r in ratio_names)
    assert any(r.startswith("map 50 / static fan-out 50") for r in ratio_names)
