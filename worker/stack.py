"""A local stack of real cairn processes: workers, beat, Flower and the API, by pid.

Used by the integration tests, the chaos suite and the benchmarks (a benchmark is a user of
cairn, so what it needs to start and kill workers lives in the package, not in tests/).
Processes start in their own session (process group) and are stopped by pid: SIGTERM,
then SIGKILL. Readiness is probed with Celery's ``control.ping``, never slept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery
from pydantic import SecretStr

from worker.app import make_celery
from worker.devstack import die_with_parent
from worker.settings import Settings


def stack_env(settings: Settings, step_modules: str, cwd: Path | None = None) -> dict[str, str]:
    """Environment for a worker or beat process of ``settings``.

    ``cwd`` (default: the current folder) goes on PYTHONPATH so step modules import.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CAIRN_")}
    env.update(
        {
            "CAIRN_DATABASE_URL": settings.database_url,
            "CAIRN_BROKER_URL": settings.broker_url,
            "CAIRN_LEASE_S": str(settings.lease_s),
            "CAIRN_REDISPATCH_AFTER_S": str(settings.redispatch_window_s),
            "CAIRN_SERVER_RETRY_S": str(settings.server_retry_s),
            "CAIRN_SERVER_MAX_RELEASES": str(settings.server_max_releases),
            "CAIRN_INLINE_CONTINUATION": str(settings.inline_continuation).lower(),
            "CAIRN_STEP_MODULES": step_modules,
            "CAIRN_ARTIFACTS_DIR": str(settings.artifacts_dir),
            "CAIRN_ARTIFACT_BACKEND": settings.artifact_backend,
            "CAIRN_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
            "CAIRN_S3_BUCKET": settings.s3_bucket,
            "CAIRN_S3_USE_SSL": str(settings.s3_use_ssl).lower(),
            "CAIRN_S3_ACCESS_KEY": _secret(settings.s3_access_key),
            "CAIRN_S3_SECRET_KEY": _secret(settings.s3_secret_key),
            "CAIRN_INLINE_LIMIT_BYTES": str(settings.inline_limit_bytes),
            "CAIRN_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(cwd or Path.cwd()),
            **(
                {"CAIRN_RUN_RETENTION_DAYS": str(settings.run_retention_days)}
                if settings.run_retention_days is not None
                else {}
            ),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.notify_hook is not None:
        env["CAIRN_NOTIFY_HOOK"] = settings.notify_hook.get_secret_value()
    return env


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


@dataclass
class Proc:
    """A child process we started, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left."""
        if self.alive():
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        _signal_group(self.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(5)

    def kill(self) -> None:
        """kill -9 the whole process group: the machine died mid-step."""
        _signal_group(self.pid, signal.SIGKILL)
        self.popen.wait(10)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


@dataclass
class Stack:
    """Workers and a beat for one settings object."""

    settings: Settings
    log_dir: Path
    #: Comma-separated modules whose ``@step`` functions the workers load.
    step_modules: str = "tasks.examples"
    #: Working folder of the processes (on their PYTHONPATH).
    cwd: Path = field(default_factory=Path.cwd)
    procs: list[Proc] = field(default_factory=list)
    _count: int = 0
    _app: Celery | None = None

    @property
    def app(self) -> Celery:
        """A Celery app to probe the workers with."""
        if self._app is None:
            self._app = make_celery(self.settings)
        return self._app

    def start_worker(
        self,
        concurrency: int = 2,
        pool: str = "prefork",
        app: str = "tasks.celery_app",
        queue: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """Start a worker process (of ``app``) and wait until it answers a ping.

        ``env`` overrides variables of this worker only (say ``CAIRN_INLINE_CONTINUATION``).
        """
        self._count += 1
        name = f"w{self._count}-{os.getpid()}@testhost"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
            "-Q",
            queue or self.settings.default_queue,
            "-n",
            name,
        ]
        proc = self._spawn(name, argv, extra_env=env)
        self._wait_ping(proc, name)
        return proc

    def start_beat(self, env: dict[str, str] | None = None) -> Proc:
        """Start a beat process with the in-memory scheduler (no shelve, no pickle);
        ``env`` overrides variables of this beat only."""
        self._count += 1
        name = f"beat{self._count}"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks.celery_app",
            "beat",
            "--scheduler",
            "tasks.beat:Scheduler",
            "--loglevel=INFO",
        ]
        proc = self._spawn(name, argv, env)
        deadline = time.monotonic() + 30
        while "beat: Starting" not in proc.log.read_text(errors="replace"):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"beat did not start; log:\n{proc.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return proc

    def start_flower(self, port: int, password: str) -> Proc:
        """Start ``cairn flower`` with basic auth and wait until it answers HTTP."""
        env = {"CAIRN_FLOWER_PORT": str(port), "CAIRN_FLOWER_PASSWORD": password}
        argv = [os.path.join(os.path.dirname(sys.executable), "cairn"), "flower"]
        proc = self._spawn("flower", argv, extra_env=env)
        return _wait_http(proc, f"http://127.0.0.1:{port}/healthcheck")

    def start_api(self, port: int, workers: int = 1, env: dict[str, str] | None = None) -> Proc:
        """Start ``cairn api`` on loopback and wait until ``/healthz`` answers."""
        self._count += 1
        argv = [_cairn(), "api", "--port", str(port), "--workers", str(workers)]
        proc = self._spawn(f"api{self._count}", argv, extra_env=env)
        return _wait_http(proc, f"http://127.0.0.1:{port}/healthz")

    def stop(self) -> None:
        """Stop every process this stack started."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if self._app is not None:
            self._app.close()
            self._app = None

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        log = self.log_dir / f"{name.split('@', maxsplit=1)[0]}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env={
                    **stack_env(self.settings, self.step_modules, self.cwd),
                    **(extra_env or {}),
                },
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - own group; dies with pytest
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def _wait_ping(self, proc: Proc, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                break
            replies = self.app.control.ping(destination=[name], timeout=0.5)
            if any(name in reply for reply in replies or []):
                return
        proc.stop()
        raise RuntimeError(
            f"worker {name} did not answer a ping; log:\n{proc.log.read_text()[-3000:]}"
        )

    def start_cairn_worker(
        self, concurrency: int = 2, pool: str = "prefork", queue: str | None = None
    ) -> Proc:
        """Start ``cairn worker`` (the console script users run); wait until it answers a ping.

        A ping that meets a broker connection error (the broker restarted under the probe's
        pooled connection) is asked again, for up to a minute.
        """
        self._count += 1
        name = f"cw{self._count}-{os.getpid()}@testhost"
        queue = queue or self.settings.default_queue
        argv = [_cairn(), "worker", "-c", str(concurrency), "--pool", pool, "-Q", queue, "-n", name]
        proc = self._spawn(name, argv)
        with self.app.connection_for_write() as conn:
            broker_errors = conn.connection_errors
        deadline = time.monotonic() + 60
        while True:
            try:
                self._wait_ping(proc, name, timeout=max(0.1, deadline - time.monotonic()))
                return proc
            except broker_errors:
                if time.monotonic() > deadline:
                    proc.stop()
                    raise

    def start_cairn_beat(self) -> Proc:
        """Start ``cairn beat``; wait until its log says the scheduler started."""
        self._count += 1
        proc = self._spawn(f"cbeat{self._count}", [_cairn(), "beat"])
        deadline = time.monotonic() + 30
        while "beat: Starting" not in proc.log.read_text(errors="replace"):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"cairn beat did not start; log:\n{proc.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        return proc


def _wait_http(proc: Proc, url: str, timeout: float = 30.0) -> Proc:
    """``proc`` once ``url`` answers 200; its log in the error if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            break
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback http
                return proc
        except OSError:
            time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"{proc.name} did not answer {url}; log:\n{proc.log.read_text()[-3000:]}")


def _cairn() -> str:
    """The ``cairn`` console script next to this interpreter."""
    return os.path.join(os.path.dirname(sys.executable), "cairn")
