"""50 HTTP clients at once, starting and reading runs: no errors, one run per key."""

from __future__ import annotations

import threading
from collections import defaultdict

import httpx

from tests.integration.api.conftest import KeyMaker

CLIENTS = 50
KEYS = 10
SPEC = {"name": "one", "steps": [{"key": "a", "task": "t.increment"}]}


def test_fifty_clients_one_run_per_idempotency_key(api_url: str, make_key: KeyMaker) -> None:
    key = make_key()
    barrier = threading.Barrier(CLIENTS)
    runs: dict[str, set[str]] = defaultdict(set)
    created: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        try:
            with httpx.Client(
                base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as http:
                barrier.wait(timeout=30)
                idem = f"order-{n % KEYS}"
                body = {"spec": SPEC, "inputs": {"x": n % KEYS}, "idempotency_key": idem}
                started = http.post("/v1/runs", json=body)
                if started.status_code not in (200, 201):
                    raise AssertionError(f"start {started.status_code}: {started.text}")
                run_id = started.json()["run_id"]
                read = http.get(f"/v1/runs/{run_id}")
                if read.status_code != 200 or read.json()["inputs"] != {"x": n % KEYS}:
                    raise AssertionError(f"read {read.status_code}: {read.text}")
                with lock:
                    runs[idem].add(run_id)
                    if started.status_code == 201:
                        created.append(run_id)
        except Exception as exc:  # collected: a thread's assertion must fail the test
            with lock:
                failures.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert {k: len(v) for k, v in runs.items()} == {f"order-{i}": 1 for i in range(KEYS)}
    assert sorted(created) == sorted(next(iter(v)) for v in runs.values())
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}) as http:
        listed = http.get("/v1/runs", params={"limit": 500}).json()["runs"]
    assert len(listed) == KEYS
