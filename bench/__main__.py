"""``python -m bench [--smoke]``: run every workload against real Redis and PostgreSQL."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from bench import workloads
from bench.report import HEADER, Figure, Ratio, format_figure, print_line, print_table, write_json
from db import migrate
from worker.app import make_celery
from worker.client import Client
from worker.settings import Settings
from worker.stack import Stack

ADMIN_URL = os.environ.get(
    "CAIRN_BENCH_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CAIRN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
DB = "cairn_bench"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated workloads to run (sequential, throughput, fan-out, "
        "status read, http api, enqueuers, recovery); all by default",
    )
    args = parser.parse_args()
    started = time.monotonic()
    settings = _prepare(lease_s=3.0 if args.smoke else 5.0)
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
    stack = Stack(settings, work, step_modules="bench.steps")
    r = redis.Redis.from_url(REDIS_URL)
    baseline = make_celery(settings)
    client = Client(settings)
    dbos_url = ADMIN_URL.replace("+psycopg2", "").rsplit("/", 1)[0] + f"/{DB}_dbos"
    b = workloads.Bench(settings, stack, client, r, baseline, dbos_url)
    figures: list[Figure] = []
    failed: list[str] = []

    def run(name: str, workload: Callable[[], list[Figure]]) -> None:
        """Run one workload; print its figures at once; a failure loses only this one."""
        try:
            measured = workload()
        except Exception:
            failed.append(name)
            print_line(f"{name}: FAILED\n{traceback.format_exc()}")
            return
        figures.extend(measured)
        for figure in measured:
            print_line(format_figure(figure))

    print_line(HEADER)
    try:
        # The broker path is measured with inline continuation off; a second worker on its
        # own queue continues chains inline.
        stack.start_worker(concurrency=2, env={"CAIRN_INLINE_CONTINUATION": "false"})
        stack.start_worker(concurrency=1, queue=workloads.INLINE_QUEUE)
        stack.start_worker(concurrency=2, app="bench.baseline_app", queue="baseline")
        chosen = {n.strip() for n in args.only.split(",") if n.strip()}
        for name, workload in _workloads(b, args.smoke):
            if not chosen or name in chosen:
                run(name, workload)
    finally:
        b.close()
        stack.stop()
        client.close()
        baseline.close()
        r.flushdb()
        r.close()
    ratios = _ratios(figures, settings.lease_s)
    header = (
        f"cairn benchmark{' (smoke)' if args.smoke else ''}: {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}, {_pg_version()}, Redis {REDIS_URL}, "
        f"took {time.monotonic() - started:.0f} s"
    )
    print_table(figures, ratios, header)
    write_json(args.out, figures, ratios, {"header": header, "smoke": args.smoke, "failed": failed})
    if failed:
        print_line(f"workloads that failed: {', '.join(failed)}")
        return 1
    return 0


def _workloads(b: workloads.Bench, smoke: bool) -> list[tuple[str, Callable[[], list[Figure]]]]:
    """The workloads in the order they run, at smoke or full size."""
    if smoke:
        return [
            ("sequential", lambda: workloads.sequential(b, [10, 30], {10: 2, 30: 1})),
            ("throughput", lambda: workloads.throughput(b, 50, 1)),
            ("fan-out", lambda: workloads.fan_out(b, 50)),
            ("map", lambda: workloads.map_join(b, 50)),
            ("status read", lambda: workloads.scale_of_state(b, 10_000, 50)),
            ("http api", lambda: workloads.http_api(b, reads=50, starts=100, clients=10)),
            (
                "enqueuers",
                lambda: workloads.enqueuers(b, clients=10, starts=100, processes=2, rate=50),
            ),
            ("recovery", lambda: workloads.recovery(b, observe_s=8)),
        ]
    return [
        ("sequential", lambda: workloads.sequential(b, [10, 100, 1000], {10: 5, 100: 3, 1000: 1})),
        ("throughput", lambda: workloads.throughput(b, 2000, 1)),
        ("fan-out", lambda: workloads.fan_out(b, 1000)),
        ("map", lambda: workloads.map_join(b, 1000)),
        ("map 10000", lambda: workloads.map_join(b, 10_000)),
        ("status read", lambda: workloads.scale_of_state(b, 1_000_000, 500)),
        ("http api", lambda: workloads.http_api(b, reads=500, starts=3000, clients=50)),
        (
            "enqueuers",
            lambda: workloads.enqueuers(b, clients=50, starts=5000, processes=5, rate=500),
        ),
        ("recovery", lambda: workloads.recovery(b, observe_s=60)),
    ]


def _prepare(lease_s: float) -> Settings:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB}"'))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}_dbos" WITH (FORCE)'))
    admin.dispose()
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB}"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        broker_url=REDIS_URL,
        lease_s=lease_s,
        redispatch_after_s=30,
        artifacts_dir=Path(tempfile.mkdtemp(prefix="cairn-bench-art-")),
    )
    migrate.upgrade(settings)
    redis.Redis.from_url(REDIS_URL).flushdb()
    return settings


def _pg_version() -> str:
    engine = create_engine(ADMIN_URL)
    try:
        with engine.connect() as conn:
            return (
                str(conn.execute(text("SHOW server_version")).scalar())
                .split()[0]
                .join(["PostgreSQL ", ""])
            )
    finally:
        engine.dispose()


def _ratios(figures: list[Figure], lease_s: float) -> list[Ratio]:
    by = {(f.workload, f.variant, f.unit): f for f in figures}
    ratios = []
    for f in figures:
        if f.workload.startswith("sequential") and f.variant == "cairn inline" and f.samples:
            ratios.append(
                Ratio(f"{f.workload}: inline ms/step", f.median, "<= 2 ms", f.median <= 2)
            )
            dbos = by.get((f.workload, "dbos", "ms/step"))
            if dbos is not None and dbos.samples:
                value = f.median / dbos.median
                ratios.append(Ratio(f"{f.workload}: inline / dbos", value, "<= 0.5", value <= 0.5))
    seq = [f for f in figures if f.workload.startswith("sequential") and f.variant == "cairn"]
    for f in seq:
        base = by[(f.workload, "celery chain", "ms/step")]
        value = f.median / base.median
        ratios.append(Ratio(f"{f.workload}: cairn / celery", value, "<= 1.25", value <= 1.25))
    if len(seq) >= 2:
        value = seq[-1].median / seq[0].median
        ratios.append(
            Ratio(
                f"ms/step {seq[-1].workload[11:]} / {seq[0].workload[11:]}",
                value,
                "<= 1.1",
                value <= 1.1,
            )
        )
    for f in figures:
        if f.workload.startswith("throughput") and f.variant == "cairn runs":
            base = by[(f.workload, "celery tasks", "per s")]
            value = f.median / base.median
            ratios.append(Ratio(f"{f.workload}: cairn / celery", value, ">= 0.85", value >= 0.85))
        if f.workload.startswith("recovery") and f.variant == "cairn" and f.samples:
            value = f.median / lease_s
            ratios.append(Ratio("recovery: seconds / lease", value, "<= 2", value <= 2))
        if f.workload.startswith("status read") and f.samples:
            p99 = statistics.quantiles(f.samples, n=100)[98] if len(f.samples) >= 2 else f.median
            ratios.append(
                Ratio(f"{f.workload}: p99 ms (p50 {f.median:.2f})", p99, "<= 5 ms", p99 <= 5)
            )
    return ratios + _fan_out_ratios(figures, by) + _start_ratios(figures)


def _fan_out_ratios(figures: list[Figure], by: dict[tuple[str, str, str], Figure]) -> list[Ratio]:
    """Targets of fan-outs: transactions per step, and a map against the static fan-out."""
    ratios = []
    for f in figures:
        if f.workload.startswith("fan-out") and f.unit == workloads.WRITE_XACTS and f.samples:
            # Two per step (the claim, the completion); the run's start and the workers'
            # registry beats, a handful whatever the width, are allowed 1% on top.
            ratios.append(
                Ratio(f"{f.workload}: {f.unit}", f.median, "<= 2 (+1%)", f.median <= 2.02)
            )
        if f.workload.startswith("map ") and f.unit == "s to join" and f.samples:
            width = f.workload.split()[1]
            static = by.get((f"fan-out {width} + join", "cairn", "s to join"))
            if static is not None and static.samples:
                value = f.median / static.median
                ratios.append(
                    Ratio(f"map {width} / static fan-out {width}", value, "<= 1.5", value <= 1.5)
                )
    return ratios


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 2 else samples[0]


def _start_ratios(figures: list[Figure]) -> list[Ratio]:
    """Targets of starting and reading runs: by the Client and over HTTP."""
    ratios = []
    for f in figures:
        if not f.samples:
            continue
        if f.workload.startswith("HTTP status read"):
            p99 = _p99(f.samples)
            ratios.append(Ratio(f"{f.workload}: p99 ms", p99, "<= 10 ms", p99 <= 10))
        elif f.workload.startswith("HTTP starts"):
            ratios.append(Ratio(f"{f.workload}: per s", f.median, ">= 300", f.median >= 300))
        elif f.workload.startswith("enqueuers") and f.unit == "per s":
            ratios.append(Ratio(f"{f.workload}: per s", f.median, ">= 500", f.median >= 500))
        elif f.workload.startswith("enqueuers"):
            p99 = _p99(f.samples)
            ratios.append(Ratio(f"{f.workload}: p99 ms", p99, "<= 50 ms", p99 <= 50))
    return ratios


if __name__ == "__main__":
    sys.exit(main())
