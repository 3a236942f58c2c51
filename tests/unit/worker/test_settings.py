"""Settings: env prefix, .env, defaults, refusal of bad values, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigurationError
from worker.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CAIRN_ variable or .env of the developer's leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("CAIRN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_setup() -> None:
    settings = get_settings()
    assert settings.database_url == "sqlite:///./cairn.db"
    assert settings.is_sqlite
    assert (settings.db_pool_size, settings.db_max_overflow) == (5, 15)
    assert settings.db_pool_timeout_s == 30
    assert settings.db_pool_pre_ping is True
    assert settings.broker_url == "redis://localhost:6379/0"
    assert settings.artifact_backend == "local"
    assert settings.lease_s == 30
    assert settings.heartbeat_interval_s == 10


def test_environment_overrides_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_DB_POOL_SIZE", "7")
    monkeypatch.setenv("cairn_lease_s", "12.5")
    settings = get_settings()
    assert settings.db_pool_size == 7
    assert settings.lease_s == 12.5


def test_dotenv_is_read_case_insensitively_and_unknown_keys_ignored(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("cairn_db_schema=tenant_a\nCAIRN_NOT_A_SETTING=1\nOTHER=2\n")
    settings = get_settings()
    assert settings.db_schema == "tenant_a"


def test_step_modules_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_STEP_MODULES", "app.steps, app.more ,")
    assert get_settings().step_modules == ["app.steps", "app.more"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CAIRN_DATABASE_URL", "not a url"),
        ("CAIRN_DATABASE_URL", "mysql://localhost/x"),
        ("CAIRN_DB_POOL_SIZE", "-1"),
        ("CAIRN_DB_MAX_OVERFLOW", "-3"),
        ("CAIRN_DB_SCHEMA", "bad schema; drop"),
        ("CAIRN_BROKER_URL", "http://localhost"),
        ("CAIRN_LEASE_S", "-0.5"),
        ("CAIRN_ARTIFACT_BACKEND", "ftp"),
    ],
)
def test_a_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        get_settings()
    assert variable in str(info.value)
    assert value not in str(info.value)


def test_secrets_stay_out_of_repr_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_S3_SECRET_KEY", "hunter2-secret")
    monkeypatch.setenv("CAIRN_DATABASE_URL", "postgresql://app:pg-password@db:5432/cairn")
    monkeypatch.setenv("CAIRN_BROKER_URL", "redis://:redis-password@cache:6379/0")
    settings = get_settings()
    shown = repr(settings) + str(settings) + settings.safe_database_url + settings.safe_broker_url
    for secret in ("hunter2-secret", "pg-password", "redis-password"):
        assert secret not in shown
    assert settings.s3_secret_key is not None
    assert settings.s3_secret_key.get_secret_value() == "hunter2-secret"

    monkeypatch.setenv("CAIRN_DB_POOL_SIZE", "nope")
    with pytest.raises(ConfigurationError) as info:
        get_settings()
    assert "hunter2-secret" not in str(info.value)
    assert "pg-password" not in str(info.value)


def test_settings_are_built_not_imported() -> None:
    settings = Settings(_env_file=None, lease_s=4)  # type: ignore[call-arg]
    assert settings.lease_s == 4
    with pytest.raises(Exception, match="frozen"):
        settings.lease_s = 5  # type: ignore[misc]
