"""A real Flower process, started by ``cairn flower``, behind basic auth."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support.stack import Stack
from worker.client import Client
from worker.devstack import free_port

PASSWORD = "flower-test-pw"


def get(port: int, path: str, password: str | None = PASSWORD) -> Any:
    headers = {}
    if password is not None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_flower_lists_the_worker_and_step_tasks_with_auth(stack: Stack, client: Client) -> None:
    port = free_port()
    stack.start_flower(port, PASSWORD)
    worker = stack.start_worker()
    spec = {"name": "watched", "steps": [{"key": "a", "task": "t.increment"}]}
    run_id = client.start_run(spec=spec, inputs={"x": 1})
    assert client.wait(run_id, timeout=30).status == "succeeded"

    deadline = time.monotonic() + 20
    tasks: dict[str, Any] = {}
    while time.monotonic() < deadline:
        tasks = get(port, "/api/tasks")
        if any(t.get("state") == "SUCCESS" for t in tasks.values()):
            break
        time.sleep(0.3)
    names = {t["name"] for t in tasks.values()}
    assert "cairn.step a (t.increment)" in names, tasks  # workflow step keys read well
    step = client.get_run(run_id).step("a")
    assert f"{step.id}:1" in tasks  # the task id is derived from step and attempt

    deadline = time.monotonic() + 20
    workers: dict[str, Any] = {}
    while worker.name not in workers and time.monotonic() < deadline:
        workers = get(port, "/api/workers?refresh=1")  # ask the workers now, not the cache
    assert worker.name in workers
    assert workers[worker.name]["stats"]["total"] == {"cairn.step a (t.increment)": 1}

    for path in ("/api/workers", "/api/tasks"):
        with pytest.raises(urllib.error.HTTPError) as info:
            get(port, path, password=None)
        info.value.close()
        assert info.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as wrong:
            get(port, path, password="wrong")
        wrong.value.close()
        assert wrong.value.code == 401


def status_of(port: int, path: str, password: str | None = PASSWORD) -> int:
    """The HTTP status of GET ``path``, as curl would see it (no redirects followed)."""
    try:
        get_raw(port, path, password)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code
    return 200


def get_raw(port: int, path: str, password: str | None = PASSWORD) -> bytes:
    headers = {}
    if password is not None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return bytes(response.read())


PROTECTED = (
    "/metrics",
    "/api/workers",
    "/api/tasks",
    "/tasks",
    "/workers",
    "/",
    "/broker",
    "/static/js/flower.js",
    "/no/such/page",
)


def test_every_endpoint_but_the_healthcheck_needs_credentials(stack: Stack) -> None:
    port = free_port()
    stack.start_flower(port, PASSWORD)

    assert status_of(port, "/healthcheck", password=None) == 200
    assert get_raw(port, "/healthcheck", password=None) == b"OK"
    for path in PROTECTED:
        assert status_of(port, path, password=None) == 401, path
        assert status_of(port, path, password="wrong") == 401, path
    metrics = get_raw(port, "/metrics")
    assert b"flower_" in metrics  # the real Prometheus page, once authenticated
    for path in ("/api/workers", "/api/tasks", "/tasks"):
        assert status_of(port, path) == 200, path
