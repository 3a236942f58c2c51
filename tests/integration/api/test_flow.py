"""Flow control over HTTP: the tenant's quota of running steps, a run's priority."""

from __future__ import annotations

import httpx

from tests.integration.api.test_endpoints import error_of, start, wait_run


def test_quota_and_priority(http: httpx.Client) -> None:
    assert http.get("/v1/quota").raise_for_status().json() == {"max_running_steps": None}
    put = http.put("/v1/quota", json={"max_running_steps": 3}).raise_for_status()
    assert put.json() == {"max_running_steps": 3}
    assert http.get("/v1/quota").json() == {"max_running_steps": 3}
    error = error_of(http.put("/v1/quota", json={"max_running_steps": 0}), 422)
    assert error["field"] == "max_running_steps"
    spec = {"name": "urgent", "steps": [{"key": "a", "task": "t.increment"}]}
    run_id = start(http, spec=spec, inputs={"x": 1}, priority=9)
    assert wait_run(http, run_id)["status"] == "succeeded"  # under the quota of 3
    error = error_of(http.post("/v1/runs", json={"spec": spec, "priority": 10}), 422)
    assert error["field"] == "priority"
    http.put("/v1/quota", json={"max_running_steps": None}).raise_for_status()
