"""The Grafana dashboard in infra/ queries only metrics the workers export, by the names
the Prometheus text format gives them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from worker import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "cairn-workers.json"


def exported_names() -> set[str]:
    """The series names of every metric a worker exports."""
    registry = CollectorRegistry()
    metrics._make(registry)  # its own registry: the process's may hold them already
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{part}" for part in ("bucket", "count", "sum")}
        else:
            names.add(family.name)
    return names


def test_every_panel_queries_exported_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    names = exported_names()
    used = {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bcairn_[a-z_]+", target["expr"])
    }
    assert used
    assert used <= names, used - names
