"""The API's /metrics: the caller's tenant, read from the database, behind its key."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.api.test_endpoints import start, wait_run

PAID = {"name": "paid-one", "steps": [{"key": "w", "task": "t.write"}]}


def test_metrics_of_the_callers_tenant(http: httpx.Client, api_url: str) -> None:
    assert httpx.get(f"{api_url}/metrics").status_code == 401
    for _ in range(2):
        wait_run(http, start(http, spec=PAID, inputs={"topic": "x"}))
    response = http.get("/metrics").raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("cairn_runs", (("status", "succeeded"),))] == 2
    assert samples[("cairn_run_steps", (("status", "succeeded"),))] == 2
    assert samples[("cairn_approvals_waiting", ())] == 0
    spend = ("cairn_recorded_spend_usd_total", (("model", "model-x"), ("provider", "llm")))
    assert samples[spend] == 0.02
