"""Approvals, signals and spend limits over HTTP, against a real uvicorn and worker."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.integration.api.test_endpoints import error_of, start, wait_run

GATED = {
    "name": "http-gated",
    "steps": [
        {"key": "ship", "task": "t.increment", "approve": {"title": "Ship?", "group": "ops"}}
    ],
}
LISTEN = {"name": "http-listen", "steps": [{"key": "listen", "task": "t.signal"}]}
SPEND = {"name": "http-spend", "steps": [{"key": "spend", "task": "t.spend"}]}


def pending_of(http: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = http.get("/v1/approvals", params={"run_id": run_id}).raise_for_status().json()
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, "no approval request came"
        time.sleep(0.1)


def test_approve_over_http_resumes_the_run_and_a_second_decision_is_refused(
    http: httpx.Client,
) -> None:
    run_id = start(http, spec=GATED, inputs={"x": 41})
    request = pending_of(http, run_id)
    assert request["title"] == "Ship?"
    assert request["group"] == "ops"
    assert request["status"] == "pending"
    assert request["step_key"] == "ship"
    assert http.get(f"/v1/approvals/{request['id']}").json() == request
    ops = http.get("/v1/approvals", params={"group": "ops", "run_id": run_id}).json()
    assert [a["id"] for a in ops] == [request["id"]]

    decided = http.post(
        f"/v1/approvals/{request['id']}/approve", json={"by": "alice", "comment": "go"}
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    assert decided.json()["decided_by"] == "alice"
    run = wait_run(http, run_id)
    assert run["status"] == "succeeded"
    assert run["steps"][0]["output"] == {"x": 42}

    again = error_of(http.post(f"/v1/approvals/{request['id']}/reject", json={}), 409)
    assert again["code"] == "already_decided"
    assert "alice" in again["message"]


def test_reject_by_default_names_the_api_key(http: httpx.Client) -> None:
    run_id = start(http, spec=GATED, inputs={"x": 1})
    request = pending_of(http, run_id)
    rejected = http.post(f"/v1/approvals/{request['id']}/reject", json={"comment": "no"})
    assert rejected.json()["decided_by"].startswith("api-key:")
    assert wait_run(http, run_id)["status"] == "failed"


def test_signal_over_http_is_delivered(http: httpx.Client) -> None:
    run_id = start(http, spec=LISTEN)
    sent = http.post(f"/v1/runs/{run_id}/signals", json={"name": "go", "payload": {"a": [1]}})
    assert sent.status_code == 201, sent.text
    run = wait_run(http, run_id)
    assert run["steps"][0]["output"] == {"payloads": [{"a": [1]}]}
    ended = error_of(http.post(f"/v1/runs/{run_id}/signals", json={"name": "go"}), 409)
    assert ended["code"] == "run_ended"
    bad = error_of(http.post(f"/v1/runs/{run_id}/signals", json={"name": ""}), 422)
    assert bad["field"] == "name"


def test_budget_pause_shows_why_and_approving_a_raise_resumes(http: httpx.Client) -> None:
    run_id = start(http, spec=SPEND, inputs={"rounds": 2}, budget_usd="0.5")
    request = pending_of(http, run_id)
    assert request["kind"] == "budget"
    run = http.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "paused"
    assert run["paused"]["reason"] == "run_budget"
    assert run["paused"]["approval_id"] == request["id"]
    missing = error_of(http.post(f"/v1/approvals/{request['id']}/approve", json={}), 422)
    assert missing["field"] == "budget_usd"
    raised = http.post(f"/v1/approvals/{request['id']}/approve", json={"budget_usd": "5"})
    assert raised.status_code == 200, raised.text
    run = wait_run(http, run_id)
    assert run["status"] == "succeeded"
    assert run["budget_usd"] == "5"


def test_spend_limits_are_read_and_set(http: httpx.Client) -> None:
    before = http.get("/v1/limits").raise_for_status().json()
    assert before["daily_limit_usd"] is None
    changed = http.put("/v1/limits", json={"daily_usd": "12.5", "monthly_usd": "100"}).json()
    assert changed["daily_limit_usd"] == "12.5"
    assert changed["monthly_limit_usd"] == "100"
    negative = error_of(http.put("/v1/limits", json={"daily_usd": "-1"}), 422)
    assert negative["field"] == "daily_usd"
    cleared = http.put("/v1/limits", json={}).json()
    assert cleared["daily_limit_usd"] is None
    assert cleared["monthly_limit_usd"] is None
