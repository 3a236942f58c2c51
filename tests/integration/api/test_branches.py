"""Fork and diff over HTTP (a real `cairn api` and worker): the fork reuses what came
before its step, the diff names the changes; bad forks are refused naming the field."""

from __future__ import annotations

import httpx

from tests.integration.api.test_endpoints import error_of, start, wait_run

CHAIN = {
    "name": "chain",
    "steps": [
        {"key": "s1", "task": "t.write"},
        {"key": "s2", "task": "t.write", "after": ["s1"]},
        {"key": "s3", "task": "t.write", "after": ["s2"]},
    ],
}


def test_fork_then_diff(http: httpx.Client) -> None:
    run_id = start(http, spec=CHAIN, inputs={"topic": "cats"})
    assert wait_run(http, run_id)["status"] == "succeeded"
    response = http.post(
        f"/v1/runs/{run_id}/fork",
        json={"from_step": "s2", "step_inputs": {"s2": {"tone": "loud"}}, "label": "loud"},
    )
    assert response.status_code == 201, response.text
    fork_id = response.json()["run_id"]
    fork = wait_run(http, fork_id)
    assert fork["status"] == "succeeded"
    assert fork["parent_run_id"] == run_id
    steps = {s["key"]: s for s in fork["steps"]}
    assert steps["s1"]["reused_from"] is not None
    assert steps["s2"]["output"]["text"].startswith("s2(loud):cats")

    diff = http.get(f"/v1/runs/{run_id}/diff/{fork_id}").raise_for_status().json()
    assert diff["lineage"] == "b was forked from a at step s2"
    by_key = {s["key"]: s for s in diff["steps"]}
    assert by_key["s1"]["verdict"] == "same"
    assert by_key["s1"]["reused"] is True
    assert [c["path"] for c in by_key["s2"]["inputs"]] == ["tone"]
    assert by_key["s2"]["inputs"][0]["kind"] == "added"
    assert [c["path"] for c in by_key["s3"]["output"]] == ["text", "length"]


def test_a_bad_fork_names_the_field(http: httpx.Client) -> None:
    run_id = start(http, spec=CHAIN, inputs={"topic": "cats"})
    wait_run(http, run_id)
    error = error_of(http.post(f"/v1/runs/{run_id}/fork", json={"from_step": "zz"}), 422)
    assert error["field"] == "from_step"
    error = error_of(
        http.post(
            f"/v1/runs/{run_id}/fork",
            json={"from_step": "s3", "step_inputs": {"s1": {"tone": "x"}}},
        ),
        422,
    )
    assert error["field"] == "step_inputs.s1"
    missing = "00000000-0000-7000-8000-000000000000"
    error_of(http.post(f"/v1/runs/{missing}/fork", json={"from_step": "s1"}), 404)
    error_of(http.get(f"/v1/runs/{run_id}/diff/{missing}"), 404)
