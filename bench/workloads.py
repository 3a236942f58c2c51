"""The workloads. Each returns Figures; variants are interleaved in the same run."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import httpx
import redis
from celery import Celery, chain
from sqlalchemy import Connection, Engine, text

from bench.report import Figure
from db.session import run_transaction
from db.types import utcnow
from worker.apikeys import create_key
from worker.client import Client
from worker.devstack import free_port
from worker.settings import Settings
from worker.stack import Stack, stack_env

DONE_KEY = "bench:done"
#: The recovery workload's own queues: the worker it kills is their only consumer until
#: the step is running, so the step cannot start on a worker that is never killed.
RECOVERY_QUEUE = "bench-recovery"
BASELINE_RECOVERY_QUEUE = "baseline-recovery"


#: The unit of the fan-out's transactions per step.
WRITE_XACTS = "db write xacts/step"


@dataclass
class Bench:
    """Everything a workload needs: settings, the stack, a client, Redis, the baseline app."""

    settings: Settings
    stack: Stack
    client: Client
    redis: redis.Redis
    baseline: Celery
    #: A PostgreSQL URL (plain ``postgresql://``) for DBOS's system database.
    dbos_url: str = ""

    @property
    def engine(self) -> Engine:
        return self.client.runtime.engine

    @cached_property
    def looker(self) -> Connection:
        """One connection in autocommit for the bench's looks at a run: a look is one
        round trip (a pooled connection per look costs three: BEGIN, SELECT, ROLLBACK), so
        the instrument takes as little as it can of the CPU the workers share with it."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def close(self) -> None:
        """Give back the looker's connection, if it was opened."""
        looker = self.__dict__.pop("looker", None)
        if looker is not None:
            looker.close()


def _wait_status(b: Bench, run_id: uuid.UUID, timeout: float = 600, poll_s: float = 0.002) -> None:
    """Until the run succeeded, looking every ``poll_s``."""
    deadline = time.monotonic() + timeout
    query = text("SELECT status FROM workflow_runs WHERE id = :id")
    while True:
        status = b.looker.execute(query, {"id": run_id}).scalar()
        if status == "succeeded":
            return
        if status in ("failed", "cancelled") or time.monotonic() > deadline:
            raise RuntimeError(f"benchmark run {run_id} ended {status}")
        time.sleep(poll_s)  # by default as often as the baseline's end (_wait_done)


def _wait_done(r: redis.Redis, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while r.llen(DONE_KEY) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"baseline: {r.llen(DONE_KEY)}/{count} tasks done")
        time.sleep(0.002)


#: The queue of the worker that continues chains inline (the main one goes by the broker).
INLINE_QUEUE = "bench-inline"


def chain_spec(n: int, queue: str | None = None) -> dict[str, Any]:
    where = {"queue": queue} if queue else {}
    steps: list[dict[str, Any]] = [{"key": "s0", "task": "bench.noop", **where}]
    steps += [
        {"key": f"s{i}", "task": "bench.noop", "after": [f"s{i - 1}"], **where} for i in range(1, n)
    ]
    return {"name": f"bench-chain-{n}{'-' + queue if queue else ''}", "steps": steps}


def sequential(b: Bench, lengths: list[int], reps: dict[int, int]) -> list[Figure]:
    """ms per step of a chain of trivial steps: a bare Celery chain, a cairn workflow by
    the broker and with inline continuation, and DBOS Transact."""
    figures = []
    for n in lengths:
        base = Figure(f"sequential {n} steps", "celery chain", "ms/step")
        durable = Figure(f"sequential {n} steps", "cairn", "ms/step", note="broker path")
        inline = Figure(f"sequential {n} steps", "cairn inline", "ms/step")
        _cairn_chain(b, n)  # warm up (registers the definition, fills pools)
        _cairn_chain(b, n, INLINE_QUEUE)
        for _ in range(reps[n]):
            base.samples.append(_celery_chain(b, n) / n * 1000)
            durable.samples.append(_cairn_chain(b, n) / n * 1000)
            inline.samples.append(_cairn_chain(b, n, INLINE_QUEUE) / n * 1000)
        figures += [base, durable, inline, _dbos_chain(b, n, reps[n])]
    return figures


def _dbos_chain(b: Bench, n: int, reps: int) -> Figure:
    """DBOS Transact's ms/step on the same PostgreSQL, in its own process."""
    figure = Figure(f"sequential {n} steps", "dbos", "ms/step", note="DBOS Transact, in process")
    done = subprocess.run(
        [sys.executable, "-m", "bench.dbos_baseline", b.dbos_url, str(n), str(reps)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the DBOS baseline failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    figure.samples = json.loads(lines[-1])["ms_per_step"]
    return figure


def _celery_chain(b: Bench, n: int) -> float:
    b.redis.delete(DONE_KEY)
    sigs = [
        b.baseline.signature(
            "bench.baseline_noop",
            kwargs={"signal": i == n - 1},
            immutable=True,
            queue="baseline",
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    chain(*sigs).apply_async()
    _wait_done(b.redis, 1)
    return time.perf_counter() - start


def _cairn_chain(b: Bench, n: int, queue: str | None = None) -> float:
    start = time.perf_counter()
    run_id = b.client.start_run(spec=chain_spec(n, queue))
    _wait_status(b, run_id)
    return time.perf_counter() - start


def throughput(b: Bench, count: int, reps: int) -> list[Figure]:
    """Independent one-step runs per second vs bare tasks per second, same workers."""
    base = Figure(f"throughput {count}", "celery tasks", "per s")
    durable = Figure(f"throughput {count}", "cairn runs", "per s")
    spec = {"name": "bench-one", "steps": [{"key": "s", "task": "bench.noop"}]}
    b.client.start_run(spec=spec)  # warm up
    for rep in range(reps):
        b.redis.delete(DONE_KEY)
        start = time.perf_counter()
        for _ in range(count):
            b.baseline.send_task("bench.baseline_noop", kwargs={"signal": True}, queue="baseline")
        _wait_done(b.redis, count)
        base.samples.append(count / (time.perf_counter() - start))

        tenant = f"throughput-{rep}-{uuid.uuid4().hex[:6]}"
        with Client(b.settings, tenant=tenant) as client:
            start = time.perf_counter()
            for _ in range(count):
                client.start_run(spec=spec)
            _wait_tenant_done(b.engine, tenant, count)
            durable.samples.append(count / (time.perf_counter() - start))
    return [base, durable]


def _wait_tenant_done(engine: Engine, tenant: str, count: int, timeout: float = 600) -> None:
    query = text(
        "SELECT count(*) FROM workflow_runs r JOIN tenants t ON t.id = r.tenant_id "
        "WHERE t.name = :tenant AND r.status = 'succeeded'"
    )
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            if conn.execute(query, {"tenant": tenant}).scalar() == count:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"throughput: runs of {tenant} did not all succeed")
        time.sleep(0.05)


def fan_out(b: Bench, width: int) -> list[Figure]:
    """A ``width``-way fan-out with one join: time to join, write transactions per step."""
    items = [{"key": f"i{k}", "task": "bench.noop"} for k in range(width)]
    spec = {
        "name": f"bench-fan-{width}",
        "steps": [
            *items,
            {"key": "join", "task": "bench.noop", "after": [s["key"] for s in items]},
        ],
    }
    seconds = Figure(f"fan-out {width} + join", "cairn", "s to join")
    per_step = Figure(f"fan-out {width} + join", "cairn", WRITE_XACTS)
    before = _next_xid(b.engine)
    start = time.perf_counter()
    run_id = b.client.start_run(spec=spec)
    # Seconds to join: a look every 50 ms is 1% of them, and writes nothing.
    _wait_status(b, run_id, poll_s=0.05)
    seconds.samples.append(time.perf_counter() - start)
    per_step.samples.append((_next_xid(b.engine) - before) / (width + 1))
    per_step.note = "all clients: the start and the workers' beats too"
    return [seconds, per_step]


def map_join(b: Bench, width: int) -> list[Figure]:
    """A map step over ``width`` items made at run time, joined by one step: seconds to
    create the elements (the upstream's completion expands the map) and to join them.
    Compared with the static fan-out of the same width, when it was measured."""
    spec = {
        "name": f"bench-map-{width}",
        "steps": [
            {"key": "items", "task": "bench.items"},
            {
                "key": "each",
                "after": ["items"],
                "map": {"over": "items.items", "task": "bench.noop", "max_parallel": 10_000},
            },
            {"key": "join", "task": "bench.noop", "after": ["each"]},
        ],
    }
    created = Figure(f"map {width} + join", "cairn", "s to create")
    joined = Figure(f"map {width} + join", "cairn", "s to join")
    start = time.perf_counter()
    run_id = b.client.start_run(spec=spec, inputs={"n": width})
    _wait_status(b, run_id)
    joined.samples.append(time.perf_counter() - start)
    with b.engine.connect() as conn:
        created.samples.append(
            float(
                conn.execute(
                    text(
                        "SELECT EXTRACT(EPOCH FROM (min(c.created_at) - min(x.created_at)))"
                        " FROM run_events x JOIN run_events c ON c.run_id = x.run_id"
                        " JOIN workflow_steps s ON s.id = c.step_id"
                        " WHERE x.run_id = :id AND x.kind = 'expand_map'"
                        " AND c.kind = 'claim_step' AND s.map_parent_id IS NOT NULL"
                    ),
                    {"id": run_id},
                ).scalar_one()
            )
        )
    # The expanding transaction starts at its event; no element runs before it commits.
    created.note = "expansion begun -> first element running"
    return [created, joined]


def _next_xid(engine: Engine) -> int:
    """The next transaction id PostgreSQL will hand out.

    Every transaction that writes takes one id when it first writes, and reading this takes
    none, so the difference of two readings counts the writing transactions of every client
    in between, exactly and at once (the commit counter of pg_stat_database also counts
    read-only transactions, but each backend reports it up to ten seconds late).
    """
    with engine.connect() as conn:
        xmax = conn.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
        return int(xmax.scalar_one())


def recovery(b: Bench, observe_s: float) -> list[Figure]:
    """A worker killed with -9 mid-step: seconds until the step runs again.

    The doomed worker is alone on the workload's queue while the step starts; the
    survivor joins that queue only once the step runs on the doomed one.
    """
    lease = b.settings.lease_s
    durable = Figure("recovery after kill -9", "cairn", "s", note=f"lease {lease:g} s")
    base = Figure("recovery after kill -9", "celery", "s", note="visibility_timeout 3600 s")
    # cairn
    doomed = b.stack.start_worker(concurrency=1, queue=RECOVERY_QUEUE)
    run_id = b.client.start_run(
        spec={
            "name": "bench-long",
            "steps": [{"key": "s", "task": "bench.sleep", "queue": RECOVERY_QUEUE}],
        },
        inputs={"seconds": 1000},
    )
    _wait_attempt(b.engine, run_id, 1)
    b.stack.start_worker(concurrency=1, queue=RECOVERY_QUEUE)
    b.stack.start_beat()
    killed = time.perf_counter()
    doomed.kill()
    _wait_attempt(b.engine, run_id, 2, timeout=10 * lease)
    durable.samples.append(time.perf_counter() - killed)
    b.client.cancel(run_id)
    # bare Celery, same Redis settings, the same two-worker arrangement
    b.redis.delete("bench:started")
    doomed = b.stack.start_worker(
        concurrency=1, app="bench.baseline_app", queue=BASELINE_RECOVERY_QUEUE
    )
    b.baseline.send_task(
        "bench.baseline_sleep", kwargs={"seconds": 1000}, queue=BASELINE_RECOVERY_QUEUE
    )
    deadline = time.monotonic() + 60
    while b.redis.llen("bench:started") < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("baseline: the long task never started")
        time.sleep(0.01)
    b.stack.start_worker(concurrency=1, app="bench.baseline_app", queue=BASELINE_RECOVERY_QUEUE)
    killed = time.perf_counter()
    doomed.kill()
    deadline = time.monotonic() + observe_s
    while b.redis.llen("bench:started") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    if b.redis.llen("bench:started") >= 2:
        base.samples.append(time.perf_counter() - killed)
    else:
        base.note = f"not redelivered within {observe_s:g} s (visibility_timeout 3600 s)"
    return [durable, base]


def _wait_attempt(engine: Engine, run_id: uuid.UUID, attempt: int, timeout: float = 60) -> None:
    query = text("SELECT attempt, status FROM workflow_steps WHERE run_id = :id AND key = 's'")
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            row = conn.execute(query, {"id": run_id}).one()
        if row.attempt >= attempt and row.status == "running":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"step never ran as attempt {attempt}: {row}")
        time.sleep(0.02)


def scale_of_state(b: Bench, rows: int, reads: int) -> list[Figure]:
    """Status read latency of a 10-step run among ``rows`` other step rows."""
    target = b.client.start_run(spec=chain_spec(10))
    _wait_status(b, target)
    filler = b.client.start_run(
        spec={"name": "bench-filler", "steps": [{"key": "seed", "task": "bench.noop"}]}
    )
    _wait_status(b, filler)
    with b.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_steps (id, run_id, key, task, status, attempt, "
                "max_attempts, pending_upstream, retry, queue, priority, cancel_requested, "
                "created_at) SELECT gen_random_uuid(), :run, 'k' || g, 'bench.noop', "
                "'succeeded', 1, 1, 0, '{}'::jsonb, 'cairn', 5, false, now() "
                "FROM generate_series(1, :rows) g"
            ),
            {"run": filler, "rows": rows},
        )
    with b.engine.connect() as conn:
        conn.execute(text("ANALYZE workflow_steps"))
        total = conn.execute(text("SELECT count(*) FROM workflow_steps")).scalar()
    latency = Figure(
        f"status read, {total:,} step rows", "cairn", "ms", note="client.get_run of a 10-step run"
    )
    for _ in range(20):
        b.client.get_run(target)
    for _ in range(reads):
        start = time.perf_counter()
        b.client.get_run(target)
        latency.samples.append((time.perf_counter() - start) * 1000)
    return [latency]


#: A queue no benchmark worker consumes: the HTTP start workload measures the API and
#: the database, not how fast workers drain what it starts.
HTTP_IDLE_QUEUE = "bench-http-idle"


def http_api(b: Bench, reads: int, starts: int, clients: int) -> list[Figure]:
    """The HTTP API with 2 uvicorn workers: status read latency and starts per second.

    Run after the status read workload, so the read is among its million step rows.
    """
    port = free_port()
    # Each worker serves about half the clients at once: a pool that holds that many
    # connections, as a deployment would size it (past the pool, every overflow connection
    # is opened and closed per request: a TLS attempt, a login, statements prepared anew).
    api = b.stack.start_api(port, workers=2, env={"CAIRN_DB_POOL_SIZE": str(clients // 2 + 5)})
    try:
        _, key = run_transaction(
            b.engine, lambda s: create_key(s, b.client.tenant, "bench", utcnow())
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        target = b.client.start_run(spec=chain_spec(10))
        _wait_status(b, target)
        with b.engine.connect() as conn:
            total = conn.execute(text("SELECT count(*) FROM workflow_steps")).scalar()
        read = Figure(
            f"HTTP status read, {total:,} step rows", "cairn", "ms", note="GET /v1/runs/{id}"
        )
        with httpx.Client(base_url=base, headers=headers) as http:
            for _ in range(20):
                http.get(f"/v1/runs/{target}").raise_for_status()
            for _ in range(reads):
                start = time.perf_counter()
                http.get(f"/v1/runs/{target}").raise_for_status()
                read.samples.append((time.perf_counter() - start) * 1000)
        spec = {
            "name": "bench-http-one",
            "steps": [{"key": "s", "task": "bench.noop", "queue": HTTP_IDLE_QUEUE}],
        }
        started = Figure(f"HTTP starts, {clients} clients", "cairn", "per s", note="POST /v1/runs")
        per_client = max(1, starts // clients)
        pool = [httpx.Client(base_url=base, headers=headers, timeout=60) for _ in range(clients)]

        def starter(http: httpx.Client) -> None:
            for _ in range(per_client):
                http.post("/v1/runs", json={"spec": spec}).raise_for_status()

        try:
            with concurrent.futures.ThreadPoolExecutor(clients) as ex:
                list(ex.map(lambda h: h.post("/v1/runs", json={"spec": spec}), pool))  # warm
                begin = time.perf_counter()
                list(ex.map(starter, pool))
                started.samples.append(per_client * clients / (time.perf_counter() - begin))
        finally:
            for http in pool:
                http.close()
        return [read, started]
    finally:
        api.stop()


def enqueuers(b: Bench, clients: int, starts: int, processes: int, rate: float) -> list[Figure]:
    """``clients`` enqueuers at once, in ``processes`` processes (services) of threads,
    each thread with its own Client: starts per second flat out (closed loop), then each
    start's latency at an offered ``rate`` per second (open loop, from when it was due)."""
    rate_figure = Figure(
        f"enqueuers, {clients} at once", "cairn", "per s", note=f"in {processes} processes"
    )
    latency = Figure(
        f"enqueuers, {clients} at once", "cairn", "ms", note=f"per start, at {rate:.0f}/s offered"
    )
    closed = _enqueue(b, clients, starts, processes, None)
    rate_figure.samples.append(
        sum(len(r["latencies_ms"]) for r in closed) / max(r["seconds"] for r in closed)
    )
    paced = _enqueue(b, clients, starts, processes, rate)
    latency.samples = [ms for r in paced for ms in r["latencies_ms"]]
    b.redis.delete(HTTP_IDLE_QUEUE)
    return [rate_figure, latency]


def _enqueue(
    b: Bench, clients: int, starts: int, processes: int, rate: float | None
) -> list[dict[str, Any]]:
    """Run ``processes`` enqueuing processes at once (``bench.enqueue_proc``); their
    results."""
    env = stack_env(b.settings, "bench.steps")
    start_at = time.time() + 5.0  # each process builds and warms its clients by then
    argv = [str(clients // processes), str(starts // processes), str(start_at)]
    if rate is not None:
        argv.append(str(rate / processes))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.enqueue_proc", *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"an enqueuing process failed:\n{out[-2000:]}{err[-3000:]}")
        results.append(json.loads(lines[-1]))
    return results
