"""Every endpoint of the HTTP API against a real uvicorn, a real worker and a real
database (SQLite and PostgreSQL): what it returns, what it refuses, whom it answers."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

from db.session import make_engine, run_transaction
from db.types import utcnow
from tests.integration.api.conftest import KEY_CACHE_S, KeyMaker
from worker.apikeys import revoke_key

CHAIN = {
    "name": "chain",
    "steps": [
        {"key": "a", "task": "t.increment"},
        {"key": "b", "task": "t.increment", "after": ["a"]},
    ],
}
PAID = {"name": "paid", "steps": [{"key": "work", "task": "t.loop"}]}
FATAL = {"name": "fatal", "steps": [{"key": "boom", "task": "t.fatal"}]}
SLOW = {"name": "slow", "steps": [{"key": "nap", "task": "t.sleep"}]}
MAKES_FILE = {"name": "makes-file", "steps": [{"key": "make", "task": "t.artifact"}]}


def wait_run(http: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run once it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/v1/runs/{run_id}").raise_for_status().json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, f"run {run_id} still {body['status']}"
        time.sleep(0.1)


def start(http: httpx.Client, **body: Any) -> str:
    response = http.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


# --- authentication -------------------------------------------------------------------


def test_health_needs_no_key_and_everything_else_does(api_url: str, make_key: KeyMaker) -> None:
    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok", "database": "ok"}
    for method, path in [
        ("GET", "/v1/runs"),
        ("POST", "/v1/runs"),
        ("GET", f"/v1/runs/{uuid.uuid4()}"),
        ("GET", "/v1/definitions"),
        ("GET", "/v1/schedules"),
        ("GET", "/v1/workers"),
        ("GET", "/v1/costs"),
    ]:
        missing = httpx.request(method, api_url + path, json={})
        assert error_of(missing, 401)["code"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        for bad in ["Bearer nope", "Bearer cairn_abcdefgh_wrong", "Basic dXNlcjpwYXNz"]:
            refused = httpx.request(method, api_url + path, json={}, headers={"Authorization": bad})
            assert refused.status_code == 401, (path, bad, refused.text)
    key = make_key()
    wrong_secret = key[: key.rindex("_") + 1] + "x" * 43
    refused = httpx.get(f"{api_url}/v1/runs", headers={"Authorization": f"Bearer {wrong_secret}"})
    assert error_of(refused, 401)["code"] == "unauthorized"


def test_a_revoked_key_is_refused_within_the_cache_time(
    api_url: str, api_settings: Any, make_key: KeyMaker
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    key = make_key(tenant)
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{api_url}/v1/runs", headers=headers).status_code == 200
    engine = make_engine(api_settings)
    try:
        prefix = key.split("_")[1]
        run_transaction(engine, lambda s: revoke_key(s, tenant, prefix, utcnow()))
    finally:
        engine.dispose()
    time.sleep(KEY_CACHE_S + 0.2)
    refused = httpx.get(f"{api_url}/v1/runs", headers=headers)
    assert error_of(refused, 401)["code"] == "unauthorized"


def test_keys_never_reach_the_log(api_url: str, make_key: KeyMaker, api_log: Any) -> None:
    key = make_key()
    headers = {"Authorization": f"Bearer {key}"}
    httpx.get(f"{api_url}/v1/runs", headers=headers).raise_for_status()
    httpx.get(f"{api_url}/v1/runs/{uuid.uuid4()}", headers=headers)
    httpx.get(f"{api_url}/v1/runs", headers={"Authorization": f"Bearer {key}x"})
    secret = key.split("_", 2)[2]  # the secret itself may hold "_"
    assert "GET /v1/runs" in api_log()  # the access log is on: the check below means something
    assert secret not in api_log()


def test_a_dashboard_login_keeps_a_session_token_never_the_key(
    api_url: str, api_settings: Any, make_key: KeyMaker
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    key = make_key(tenant)
    with httpx.Client(base_url=api_url) as browser:
        assert browser.post("/ui/session", json={"key": key}).status_code == 204
        token = browser.cookies["cairn_key"]
        assert token.startswith("cairnui_")
        assert key.split("_", 2)[2] not in token
        assert browser.get("/v1/runs").status_code == 200  # the pages' own requests
        assert browser.get("/ui/runs", follow_redirects=False).status_code == 200
        # The token is not a key: refused as one, and a key is no longer a cookie.
        as_key = httpx.get(f"{api_url}/v1/runs", headers={"Authorization": f"Bearer {token}"})
        assert error_of(as_key, 401)["code"] == "unauthorized"
        as_cookie = httpx.get(f"{api_url}/v1/runs", cookies={"cairn_key": key})
        assert "log in again" in error_of(as_cookie, 401)["message"]
        # Logging out ends the session in the database: the same token is refused after.
        assert browser.post("/ui/logout").status_code == 204
        stale = httpx.get(f"{api_url}/v1/runs", cookies={"cairn_key": token})
        assert error_of(stale, 401)["code"] == "unauthorized"
        page = httpx.get(f"{api_url}/ui/runs", cookies={"cairn_key": token})
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login"
    engine = make_engine(api_settings)
    try:
        with engine.connect() as conn:
            assert (
                conn.scalar(
                    text("SELECT count(*) FROM dashboard_sessions WHERE prefix = :p"),
                    {"p": token.split("_")[1]},
                )
                == 0
            )
        # Revoking the key ends its other sessions, within the cache time.
        with httpx.Client(base_url=api_url) as browser:
            assert browser.post("/ui/session", json={"key": key}).status_code == 204
            assert browser.get("/v1/runs").status_code == 200
            run_transaction(engine, lambda s: revoke_key(s, tenant, key.split("_")[1], utcnow()))
            time.sleep(KEY_CACHE_S + 0.2)
            assert error_of(browser.get("/v1/runs"), 401)["code"] == "unauthorized"
            assert browser.post("/ui/session", json={"key": key}).status_code == 401
    finally:
        engine.dispose()


def test_an_expired_dashboard_session_is_refused(
    api_url: str, api_settings: Any, make_key: KeyMaker
) -> None:
    with httpx.Client(base_url=api_url) as browser:
        assert browser.post("/ui/session", json={"key": make_key()}).status_code == 204
        prefix = browser.cookies["cairn_key"].split("_")[1]
        engine = make_engine(api_settings)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE dashboard_sessions SET expires_at = :past WHERE prefix = :p"),
                    {"past": utcnow() - timedelta(seconds=1), "p": prefix},
                )
        finally:
            engine.dispose()
        time.sleep(KEY_CACHE_S + 0.2)
        assert error_of(browser.get("/v1/runs"), 401)["code"] == "unauthorized"


def test_a_body_that_names_a_key_twice_is_refused_and_starts_nothing(http: httpx.Client) -> None:
    json_type = {"content-type": "application/json"}
    twice = (
        '{"spec": {"name": "dup", "steps": '
        '[{"key": "a", "task": "t.increment", "task": "t.fatal"}]}}'
    )
    error = error_of(http.post("/v1/runs", content=twice, headers=json_type), 422)
    assert (error["code"], error["field"]) == ("invalid", "body")
    assert "the key 'task' appears twice" in error["message"]
    top = '{"spec": {"name": "dup", "steps": []}, "inputs": {}, "inputs": {"x": 1}}'
    error = error_of(http.post("/v1/runs", content=top, headers=json_type), 422)
    assert "the key 'inputs' appears twice" in error["message"]
    assert http.get("/v1/runs").json()["runs"] == []
    # Malformed JSON is still FastAPI's own refusal, and a clean body still starts.
    assert error_of(http.post("/v1/runs", content="{", headers=json_type), 422)["code"] == "invalid"
    once = twice.replace(', "task": "t.fatal"', "")
    assert http.post("/v1/runs", content=once, headers=json_type).status_code == 201


# --- runs ---------------------------------------------------------------------------------


def test_start_read_steps_events_and_idempotency(http: httpx.Client) -> None:
    body = {"spec": CHAIN, "inputs": {"x": 1}, "idempotency_key": "order-1"}
    first = http.post("/v1/runs", json=body)
    assert first.status_code == 201, first.text
    run_id = first.json()["run_id"]
    again = http.post("/v1/runs", json=body)
    assert again.status_code == 200
    assert again.json() == {"run_id": run_id, "created": False}

    run = wait_run(http, run_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["outputs"] == {"b": {"x": 3}}
    assert [s["key"] for s in run["steps"]] == ["a", "b"]
    steps = http.get(f"/v1/runs/{run_id}/steps").json()
    assert [(s["key"], s["status"], s["output"]) for s in steps] == [
        ("a", "succeeded", {"x": 2}),
        ("b", "succeeded", {"x": 3}),
    ]

    events = http.get(f"/v1/runs/{run_id}/events").json()
    kinds = [e["kind"] for e in events["events"]]
    assert kinds[0] == "start_run"
    assert kinds[-1] == "finish_run"
    assert events["next_since"] == events["events"][-1]["id"]
    # Following a run: a page after the cursor holds only what came after it.
    head = http.get(f"/v1/runs/{run_id}/events", params={"limit": 2}).json()
    assert [e["kind"] for e in head["events"]] == kinds[:2]
    rest = http.get(f"/v1/runs/{run_id}/events", params={"since": head["next_since"]}).json()
    assert [e["kind"] for e in rest["events"]] == kinds[2:]
    empty = http.get(f"/v1/runs/{run_id}/events", params={"since": events["next_since"]}).json()
    assert empty == {"events": [], "next_since": events["next_since"]}


def test_client_chosen_run_id(http: httpx.Client) -> None:
    chosen = str(uuid.uuid4())
    assert start(http, spec=CHAIN, inputs={"x": 1}, run_id=chosen) == chosen
    again = http.post("/v1/runs", json={"spec": CHAIN, "inputs": {"x": 1}, "run_id": chosen})
    assert again.status_code == 200
    assert again.json()["run_id"] == chosen


def test_list_runs_filters_and_cursor(http: httpx.Client) -> None:
    ids = [start(http, spec=CHAIN, inputs={"x": i}) for i in range(5)]
    failed = start(http, spec=FATAL)
    for run_id in [*ids, failed]:
        wait_run(http, run_id)
    page = http.get("/v1/runs", params={"limit": 2}).json()
    seen = [r["id"] for r in page["runs"]]
    while page["next_cursor"]:
        page = http.get("/v1/runs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [r["id"] for r in page["runs"]]
    assert seen == [failed, *reversed(ids)]
    only_failed = http.get("/v1/runs", params={"status": "failed"}).json()["runs"]
    assert [r["id"] for r in only_failed] == [failed]
    assert {r["workflow"] for r in http.get("/v1/runs?workflow=chain").json()["runs"]} == {"chain"}
    future = http.get("/v1/runs", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future == {"runs": [], "next_cursor": None}


def test_costs_per_run_and_tenant(http: httpx.Client) -> None:
    run_id = start(http, spec=PAID, inputs={"iterations": 3, "pause_s": 0.01})
    assert wait_run(http, run_id)["status"] == "succeeded"
    costs = http.get(f"/v1/runs/{run_id}/costs").json()
    assert costs["total_usd"] == "0.03"
    assert costs["steps"] == [
        {"key": "work", "input_tokens": 300, "output_tokens": 30, "usd": "0.03"}
    ]
    assert [(m["provider"], m["model"], m["records"]) for m in costs["by_model"]] == [
        ("openai", "gpt-test", 3)
    ]
    totals = http.get("/v1/costs").json()["by_model"]
    assert [(t["model"], t["usd"]) for t in totals] == [("gpt-test", "0.03")]


def test_cancel_and_retry(http: httpx.Client) -> None:
    slow = start(http, spec=SLOW, inputs={"seconds": 30})
    assert http.post(f"/v1/runs/{slow}/cancel", json={"reason": "no longer needed"}).json() == {
        "cancelled": True
    }
    assert wait_run(http, slow)["status"] == "cancelled"
    assert http.post(f"/v1/runs/{slow}/cancel").json() == {"cancelled": False}
    kinds = [e["kind"] for e in http.get(f"/v1/runs/{slow}/events").json()["events"]]
    assert "cancel_run" in kinds

    failed = start(http, spec=FATAL)
    assert wait_run(http, failed)["status"] == "failed"
    assert http.post(f"/v1/runs/{failed}/retry").json() == {"queued": 1}
    again = wait_run(http, failed)
    assert again["status"] == "failed"
    assert again["steps"][0]["attempt"] == 2
    # A run that has not failed cannot be retried: 409 with the stable code.
    ok = start(http, spec=CHAIN, inputs={"x": 1})
    wait_run(http, ok)
    refused = http.post(f"/v1/runs/{ok}/retry")
    assert refused.status_code == 409, refused.text


# --- artifacts ----------------------------------------------------------------------------


def test_artifact_list_download_and_presign(http: httpx.Client) -> None:
    text = "hello from a worker\n" * 1000
    run_id = start(http, spec=MAKES_FILE, inputs={"name": "reports/out.txt", "text": text})
    assert wait_run(http, run_id)["status"] == "succeeded"
    listed = http.get(f"/v1/runs/{run_id}/artifacts").json()
    assert [(a["name"], a["step_key"], a["size"]) for a in listed] == [
        ("reports/out.txt", "make", len(text))
    ]
    expected = hashlib.sha256(text.encode()).hexdigest()
    assert listed[0]["sha256"] == expected
    with http.stream("GET", f"/v1/runs/{run_id}/artifacts/reports/out.txt/content") as r:
        assert r.status_code == 200
        assert r.headers["x-content-sha256"] == expected
        data = b"".join(r.iter_bytes())
    assert hashlib.sha256(data).hexdigest() == expected
    by_step = http.get(f"/v1/runs/{run_id}/artifacts/reports/out.txt/content?step=make")
    assert by_step.content == data
    missing = http.get(f"/v1/runs/{run_id}/artifacts/nope.txt/content")
    assert error_of(missing, 404)["code"] == "not_found"
    # The local folder has no server to presign for: a clear refusal, not a fake URL.
    presign = http.get(f"/v1/runs/{run_id}/artifacts/reports/out.txt/url")
    assert error_of(presign, 409)["code"] == "configuration"


# --- definitions, schedules, workers ------------------------------------------------------


def test_definitions_register_list_show_and_start_by_name(http: httpx.Client) -> None:
    made = http.post("/v1/definitions", json={"spec": CHAIN})
    assert made.status_code == 201, made.text
    assert (made.json()["name"], made.json()["version"]) == ("chain", 1)
    same = http.post("/v1/definitions", json={"spec": CHAIN}).json()
    assert same["version"] == 1
    changed = {**CHAIN, "steps": [{"key": "a", "task": "t.increment"}]}
    assert http.post("/v1/definitions", json={"spec": changed}).json()["version"] == 2
    listed = http.get("/v1/definitions").json()
    assert [(d["name"], d["version"]) for d in listed] == [("chain", 1), ("chain", 2)]
    assert http.get("/v1/definitions/chain").json()["version"] == 2
    assert http.get("/v1/definitions/chain?version=1").json()["spec"]["steps"][1]["key"] == "b"
    assert error_of(http.get("/v1/definitions/nope"), 404)["code"] == "not_found"

    run_id = start(http, workflow="chain", version=1, inputs={"x": 10})
    assert wait_run(http, run_id)["outputs"] == {"b": {"x": 12}}


def test_schedules_add_list_pause_resume_delete(http: httpx.Client) -> None:
    http.post("/v1/definitions", json={"spec": CHAIN}).raise_for_status()
    body = {"name": "nightly", "workflow": "chain", "cron": "0 3 * * *", "inputs": {"x": 1}}
    made = http.post("/v1/schedules", json=body)
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert (schedule["name"], schedule["status"]) == ("nightly", "active")
    assert schedule["next_fire_at"].endswith(("03:00:00Z", "03:00:00+00:00"))
    sid = schedule["id"]
    assert [s["id"] for s in http.get("/v1/schedules").json()] == [sid]
    assert http.post(f"/v1/schedules/{sid}/pause").json()["status"] == "paused"
    assert http.post(f"/v1/schedules/{sid}/resume").json()["status"] == "active"
    duplicate = http.post("/v1/schedules", json=body)
    assert error_of(duplicate, 422)["field"] == "name"
    bad_cron = http.post("/v1/schedules", json={**body, "name": "x", "cron": "61 * * * *"})
    assert error_of(bad_cron, 422)["field"] == "cron"
    assert http.delete(f"/v1/schedules/{sid}").status_code == 204
    assert http.get("/v1/schedules").json() == []
    assert http.get(f"/v1/schedules/{sid}").status_code == 404


def test_workers(http: httpx.Client) -> None:
    workers = http.get("/v1/workers").json()
    running = [w for w in workers if w["status"] == "running"]
    assert running, workers
    assert "t.increment" in running[0]["step_names"]


# --- bad input: a 4xx naming the field, and nothing written ------------------------------


def test_bad_requests_name_the_field_and_write_nothing(http: httpx.Client) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"spec": CHAIN, "tenant": "someone-else"}, "tenant"),
        ({"spec": CHAIN, "inputs": {"a": 1}}, "inputs.a"),
        ({"spec": CHAIN, "inputs": []}, "inputs"),
        ({"spec": {"name": "x", "steps": []}}, "steps"),
        ({"spec": CHAIN, "workflow": "chain"}, "workflow"),
        ({}, "workflow"),
        ({"workflow": "never-registered"}, None),
        ({"spec": CHAIN, "budget_usd": "-1"}, "budget_usd"),
        ({"spec": CHAIN, "run_id": "not-a-uuid"}, "run_id"),
        ({"spec": CHAIN, "idempotency_key": "k" * 500}, "idempotency_key"),
        ({"spec": {**CHAIN, "steps": [{"key": "a", "task": "no.such.step"}]}}, None),
    ]
    for body, field in cases:
        response = http.post("/v1/runs", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        error = response.json()["error"]
        assert error["code"] in ("invalid", "invalid_id", "not_found", "unregistered_step"), error
        if field is not None:
            assert str(error["field"]).startswith(field), (body, error)
    not_json = http.post(
        "/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert error_of(not_json, 422)["code"] == "invalid"
    assert http.get("/v1/runs").json()["runs"] == []
    assert http.get("/v1/definitions").json() == []
    assert error_of(http.get("/v1/runs/not-a-uuid"), 422)["field"] == "run_id"
    assert error_of(http.get("/v1/runs?limit=0"), 422)["field"] == "limit"
    assert error_of(http.get("/v1/runs?status=bogus"), 422)["field"] == "status"
    huge = http.post(
        "/v1/runs",
        content=b" " * (9 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert error_of(huge, 413)["code"] == "payload_too_large"
    # Sent in chunks, with no length declared: counted as it streams in.
    chunked = http.post(
        "/v1/runs",
        content=(b" " * (1024 * 1024) for _ in range(9)),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in chunked.request.headers
    assert error_of(chunked, 413) == {
        "code": "payload_too_large",
        "message": "the request body is over 8388608 bytes",
        "field": "body",
    }
    too_big = http.post("/v1/runs", json={"spec": CHAIN, "inputs": {"big": "x" * 300_000}})
    big_error = error_of(too_big, 413)
    assert (big_error["code"], big_error["field"]) == ("payload_too_large", "inputs")
    assert "CAIRN_INLINE_LIMIT_BYTES" in big_error["message"]


# --- tenants ------------------------------------------------------------------------------


def test_another_tenants_objects_are_not_found(
    api_url: str, http: httpx.Client, make_key: KeyMaker
) -> None:
    run_id = start(http, spec=MAKES_FILE, inputs={"text": "mine"})
    wait_run(http, run_id)
    http.post("/v1/definitions", json={"spec": CHAIN}).raise_for_status()
    sid = http.post(
        "/v1/schedules", json={"name": "s", "workflow": "chain", "cron": "0 3 * * *"}
    ).json()["id"]
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {make_key()}"}, timeout=30
    ) as other:
        for method, path in [
            ("GET", f"/v1/runs/{run_id}"),
            ("GET", f"/v1/runs/{run_id}/steps"),
            ("GET", f"/v1/runs/{run_id}/costs"),
            ("GET", f"/v1/runs/{run_id}/events"),
            ("GET", f"/v1/runs/{run_id}/artifacts"),
            ("GET", f"/v1/runs/{run_id}/artifacts/out.txt/content"),
            ("GET", f"/v1/runs/{run_id}/artifacts/out.txt/url"),
            ("POST", f"/v1/runs/{run_id}/cancel"),
            ("POST", f"/v1/runs/{run_id}/retry"),
            ("GET", "/v1/definitions/chain"),
            ("GET", f"/v1/schedules/{sid}"),
            ("POST", f"/v1/schedules/{sid}/pause"),
            ("DELETE", f"/v1/schedules/{sid}"),
        ]:
            response = other.request(method, path)
            assert error_of(response, 404)["code"] == "not_found", (method, path)
        # Reusing the other tenant's run id is refused, not answered with its run.
        taken = other.post("/v1/runs", json={"spec": CHAIN, "inputs": {"x": 1}, "run_id": run_id})
        assert taken.status_code == 404
        assert other.get("/v1/runs").json()["runs"] == []
        assert other.get("/v1/definitions").json() == []
        assert other.get("/v1/schedules").json() == []
        assert other.get("/v1/costs").json() == {"by_model": []}
    # ... and the owner's objects are untouched.
    assert http.get(f"/v1/schedules/{sid}").json()["status"] == "active"
    assert http.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"
