"""``cairn.http.HttpClient`` against a real uvicorn, a real worker and a real database:
the typed client a service without cairn's code uses."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from cairn.http import ApiError, HttpClient
from tests.integration.api.conftest import KeyMaker
from tests.integration.api.test_endpoints import CHAIN, FATAL, MAKES_FILE, SLOW


@pytest.fixture
def cairn(api_url: str, key: str) -> HttpClient:
    with HttpClient(api_url, key) as client:
        yield client  # type: ignore[misc]


def test_start_wait_read_costs_events_and_idempotency(cairn: HttpClient) -> None:
    first = cairn.start(spec=CHAIN, inputs={"x": 1}, idempotency_key="order-7")
    assert first["created"] is True
    again = cairn.start(spec=CHAIN, inputs={"x": 1}, idempotency_key="order-7")
    assert again == {"run_id": first["run_id"], "created": False}
    run_id = first["run_id"]

    run = cairn.wait(run_id, timeout=60, poll_s=0.1)
    assert run["status"] == "succeeded", run["error"]
    assert run["outputs"] == {"b": {"x": 3}}
    assert [(s["key"], s["status"]) for s in run["steps"]] == [
        ("a", "succeeded"),
        ("b", "succeeded"),
    ]
    assert cairn.costs(run_id)["total_usd"] == "0"

    kinds = [e["kind"] for e in cairn.events(run_id)["events"]]
    assert (kinds[0], kinds[-1]) == ("start_run", "finish_run")
    head = cairn.events(run_id, limit=2)
    assert [e["kind"] for e in head["events"]] == kinds[:2]
    rest = cairn.events(run_id, since=head["next_since"])
    assert [e["kind"] for e in rest["events"]] == kinds[2:]
    assert cairn.events(run_id, since=rest["next_since"])["events"] == []

    listed = cairn.list_runs(workflow="chain")
    assert [r["id"] for r in listed["runs"]] == [run_id]
    assert [r["id"] for r in cairn.iter_runs(status="succeeded")] == [run_id]


def test_an_artifact_downloads_with_the_sha256_it_was_stored_with(cairn: HttpClient) -> None:
    text = "made by a worker, read by a service " * 100
    run_id = cairn.start_run(spec=MAKES_FILE, inputs={"name": "reports/out.txt", "text": text})
    assert cairn.wait(run_id, timeout=60, poll_s=0.1)["status"] == "succeeded"
    [listed] = cairn.artifacts(run_id)
    assert listed["name"] == "reports/out.txt"
    body = cairn.download(run_id, "reports/out.txt")
    assert hashlib.sha256(body).hexdigest() == listed["sha256"]
    assert body == text.encode()


def test_cancel_and_retry(cairn: HttpClient) -> None:
    slow = cairn.start_run(spec=SLOW, inputs={"seconds": 30})
    assert cairn.cancel(slow, reason="not needed") is True
    assert cairn.wait(slow, timeout=60, poll_s=0.1)["status"] == "cancelled"
    assert cairn.cancel(slow) is False  # it had ended

    fatal = cairn.start_run(spec=FATAL)
    assert cairn.wait(fatal, timeout=60, poll_s=0.1)["status"] == "failed"
    assert cairn.retry(fatal) == 1


def test_errors_carry_the_status_code_and_field(
    cairn: HttpClient, api_url: str, make_key: KeyMaker
) -> None:
    with pytest.raises(ApiError) as bad:
        cairn.start(spec=CHAIN, inputs={"a": 1})  # an input named like a step
    assert (bad.value.status, bad.value.code, bad.value.field) == (422, "invalid", "inputs.a")
    assert "inputs.a" in str(bad.value)

    with pytest.raises(ApiError) as missing:
        cairn.get_run(str(uuid.uuid4()))
    assert (missing.value.status, missing.value.code) == (404, "not_found")

    other = cairn.start_run(spec=CHAIN, inputs={"x": 0})
    with HttpClient(api_url, make_key()) as stranger, pytest.raises(ApiError) as hidden:
        stranger.get_run(other)
    assert hidden.value.status == 404  # another tenant's run does not exist for it

    with HttpClient(api_url, "cairn_nope_nope") as wrong, pytest.raises(ApiError) as refused:
        wrong.list_runs()
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
