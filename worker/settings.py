"""Settings: one typed object, read from CAIRN_* environment variables and ``.env``.

Nothing here runs at import time: call :func:`get_settings` (or build ``Settings(...)``
directly in tests) and pass the object down. This module imports nothing from cairn
beyond ``worker.errors``: ``db`` may import it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from worker.errors import ConfigurationError

ENV_PREFIX = "CAIRN_"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class RateLimit(BaseModel):
    """A named limit of a paid API: requests and tokens per second or per minute (any of
    them; each is a token bucket holding one period's worth)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_s: float | None = Field(None, gt=0)
    requests_per_min: float | None = Field(None, gt=0)
    tokens_per_s: float | None = Field(None, gt=0)
    tokens_per_min: float | None = Field(None, gt=0)

    def buckets(self) -> list[tuple[str, float, float]]:
        """``(dimension, refill per second, capacity)`` of each bucket of this limit."""
        found = []
        for dimension in ("requests", "tokens"):
            per_s = getattr(self, f"{dimension}_per_s")
            per_min = getattr(self, f"{dimension}_per_min")
            if per_s is not None:
                found.append((f"{dimension}/s", per_s, per_s))
            if per_min is not None:
                found.append((f"{dimension}/min", per_min / 60, per_min))
        return found


class Settings(BaseSettings):
    """Every knob of cairn. Each field is the env var ``CAIRN_<FIELD NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        # Every duration and size is finite: an `inf` lease or interval only overflows later.
        allow_inf_nan=False,
    )

    # --- database -------------------------------------------------------------------
    #: SQLAlchemy URL. SQLite file by default; ``postgresql+psycopg2://...`` in production.
    #: Hidden from repr because it may hold a password; log ``safe_database_url``.
    database_url: str = Field("sqlite:///./cairn.db", repr=False)
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(15, ge=0)
    db_pool_timeout_s: float = Field(30.0, gt=0)
    #: Ping a pooled connection before use when it sat idle over ``db_pool_ping_after_s``
    #: (a connection used a moment ago is not pinged: that round trip is per transaction).
    db_pool_pre_ping: bool = True
    db_pool_ping_after_s: float = Field(1.0, ge=0)
    #: Prepare the hot path's statements once per connection (see ``db/prepared.py``);
    #: false behind a pooler that shares sessions (PgBouncer transaction mode < 1.21).
    db_prepared_statements: bool = True
    #: PostgreSQL schema for every cairn table (created by ``cairn migrate``).
    db_schema: str | None = None
    #: How long SQLite waits for a lock before giving up, in seconds.
    sqlite_busy_timeout_s: float = Field(30.0, gt=0)

    # --- broker ---------------------------------------------------------------------
    broker_url: str = Field("redis://localhost:6379/0", repr=False)
    #: Send Celery's task-sent event with every step message (Flower then shows a step
    #: from the moment it is sent, not from when a worker receives it): a broker write more.
    task_sent_events: bool = False

    # --- artifacts ------------------------------------------------------------------
    artifact_backend: Literal["local", "s3"] = "local"
    artifacts_dir: Path = Path("./cairn-artifacts")
    s3_endpoint_url: str | None = None
    s3_bucket: str = "cairn"
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_use_ssl: bool = True
    s3_path_style: bool = True
    #: Artifacts of runs that ended this many days ago are deleted; None keeps them.
    artifact_retention_days: float | None = Field(None, gt=0)
    #: Runs that ended (succeeded, failed, cancelled) this many days ago are deleted with
    #: every row they own and their objects in the store; None keeps them.
    run_retention_days: float | None = Field(None, gt=0)
    #: An object no row points at (its attempt never committed) is deleted after this.
    orphan_grace_s: float = Field(3600.0, ge=0)
    #: How often beat runs retention.
    retention_interval_s: float = Field(3600.0, gt=0)

    # --- execution ------------------------------------------------------------------
    #: A claimed step owns its lease this long; heartbeats extend it every lease/3.
    lease_s: float = Field(30.0, gt=0)
    #: A step whose worker died is re-run until it has had this many attempts in all,
    #: even when its retry policy allows fewer: a crash is not the step's fault.
    crash_max_attempts: int = Field(5, ge=1, le=100)
    #: How often beat fires due cron slots.
    schedule_tick_s: float = Field(1.0, gt=0, le=60)
    #: A queued step not claimed this long after its dispatch is dispatched again;
    #: None means one lease (a duplicate message is harmless: the claim is fenced).
    redispatch_after_s: float | None = Field(None, gt=0)
    #: How long a transaction or an artifact-store call is retried while its server is
    #: away (lost connection, S3 down) before the attempt is released, unspent.
    server_retry_s: float = Field(30.0, ge=0, le=3600)
    #: Attempts a step may have released for server faults before it fails: a bound for a
    #: setup that is broken for good, not for an outage.
    server_max_releases: int = Field(100, ge=1, le=100_000)
    #: JSON values (inputs, outputs, checkpoints) larger than this go to the artifact store.
    inline_limit_bytes: int = Field(256 * 1024, ge=1024)
    #: Deepest nesting accepted in a JSON value.
    max_json_depth: int = Field(64, ge=2)
    #: Modules a worker imports so their ``@step`` functions register.
    #: None by default: a production worker runs the steps it is told to (``cairn dev``
    #: adds the demo's ``tasks.examples``).
    step_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    default_queue: str = "cairn"
    #: A completion that releases exactly one dependent on the same queue runs it at once
    #: in the same worker process, claimed in the same transaction (no broker hop).
    inline_continuation: bool = True
    #: Worker processes per `cairn worker` (Celery prefork concurrency).
    worker_concurrency: int = Field(2, ge=1, le=256)

    # --- flower ---------------------------------------------------------------------
    flower_address: str = "127.0.0.1"
    flower_port: int = Field(5555, ge=1, le=65535)
    flower_user: str = "admin"
    #: Basic auth password for Flower; `cairn flower` refuses to start without one
    #: unless bound to loopback.
    flower_password: SecretStr | None = None
    # --- HTTP API (`cairn api`) ---------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=1, le=65535)
    #: uvicorn worker processes.
    api_workers: int = Field(1, ge=1, le=64)
    #: Set when a TLS-terminating proxy sits in front of the API: `cairn api` refuses to
    #: listen off loopback without it, since API keys would cross the network in clear.
    api_behind_tls_proxy: bool = False
    #: Seconds a checked API key is trusted without reading the database again; a revoked
    #: key stops working within this long. 0 checks every request.
    api_key_cache_s: float = Field(5.0, ge=0, le=300)
    # --- notifications -------------------------------------------------------------
    #: Told of approvals requested, decided and expired, and of budgets reached: a URL
    #: (``https://...``, POSTed JSON ``{"event", "data"}`` with retries) or ``task:NAME``
    #: (a Celery task sent ``event`` and ``data`` kwargs). Treated as a secret: webhook
    #: URLs carry tokens. Unset: nothing is sent.
    notify_hook: SecretStr | None = None
    #: Tenant used when a caller names none (single-tenant installs).
    default_tenant: str = "default"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``text`` (a line with key=value ids) or ``json`` (one object a line, for a log
    #: pipeline); both carry run_id, step and attempt on every line logged in a step.
    log_format: Literal["text", "json"] = "text"
    #: A worker (or beat) serves Prometheus ``/metrics`` on this port; None: it does not.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    #: Beat serves its own /metrics (the reaper's and reconciler's actions) on this port.
    beat_metrics_port: int | None = Field(None, ge=1, le=65535)
    #: Where prefork children keep their counts (emptied when the worker starts); a
    #: private folder under the system's temp folder when None.
    metrics_dir: Path | None = None
    #: Named rate limits, as JSON: ``{"openai:gpt-4o": {"requests_per_min": 500,
    #: "tokens_per_min": 200000}}``; taken with ``ctx.rate_limit(name, tokens=...)`` or a
    #: step's ``rate_limits``. Their buckets live in Redis (``rate_limit_url``).
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    #: The Redis of the rate limits' buckets; the broker's when None (then a Redis broker).
    rate_limit_url: str | None = Field(None, repr=False)

    @field_validator("notify_hook")
    @classmethod
    def _hook_kind(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        hook = value.get_secret_value()
        if hook.startswith(("http://", "https://")) or (
            hook.startswith("task:") and len(hook) > len("task:")
        ):
            return value
        # The value itself is not repeated: it may hold a token.
        raise ValueError("must be an http(s):// URL or task:<celery task name>")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("is not a database URL (e.g. sqlite:///./cairn.db)") from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        try:
            url.get_dialect()
        except NoSuchModuleError:
            raise ValueError(f"names an unknown driver {url.drivername!r}") from None
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        if not re.match(r"^(redis|rediss|amqp|amqps)://", value):
            raise ValueError("must be a redis://, rediss:// or amqp:// URL")
        return value

    @field_validator("db_schema")
    @classmethod
    def _check_schema(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError("must be a plain SQL identifier (letters, digits, underscore)")
        return value

    @field_validator("step_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def db_url(self) -> URL:
        """The parsed database URL; a bare ``postgresql://`` means the psycopg2 driver.

        SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which cairn does not
        install; psycopg2-binary is the driver cairn ships with.
        """
        url = make_url(self.database_url)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg2")
        return url

    @property
    def async_db_url(self) -> URL:
        """The database URL for the API's async sessions: asyncpg or aiosqlite."""
        url = self.db_url
        if url.get_backend_name() == "postgresql":
            return url.set(drivername="postgresql+asyncpg")
        return url.set(drivername="sqlite+aiosqlite")

    @property
    def is_sqlite(self) -> bool:
        """True when the database is SQLite (the embedded default)."""
        return self.db_url.get_backend_name() == "sqlite"

    @property
    def safe_database_url(self) -> str:
        """The database URL with its password masked, for logs and errors."""
        return self.db_url.render_as_string(hide_password=True)

    @property
    def safe_broker_url(self) -> str:
        """The broker URL with its password masked, for logs and errors."""
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.broker_url)

    def secret_values(self) -> list[str]:
        """Every secret cairn knows of, to mask in error records and logs."""
        found = [self.db_url.password, make_url_password(self.broker_url)]
        if self.rate_limit_url:
            found.append(make_url_password(self.rate_limit_url))
        keys = (self.s3_access_key, self.s3_secret_key, self.flower_password, self.notify_hook)
        found += [s.get_secret_value() for s in keys if s]
        return [str(value) for value in found if value]

    @property
    def redispatch_window_s(self) -> float:
        """A queued step not claimed this long after its dispatch is dispatched again."""
        return self.redispatch_after_s if self.redispatch_after_s is not None else self.lease_s

    @property
    def busy_redispatch_after_s(self) -> float:
        """In a queue where the broker still holds messages, a step may be waiting its
        turn: it is sent again only after this long (ten windows, at least a minute)."""
        return max(60.0, 10 * self.redispatch_window_s)

    @property
    def recovery_interval_s(self) -> float:
        """How often beat runs the reaper and the reconciler: well inside one lease, so a
        dead worker's step is claimed again within 2 x lease."""
        return max(0.5, min(self.lease_s / 4, self.redispatch_window_s / 2, 5.0))

    @property
    def heartbeat_interval_s(self) -> float:
        """How often a running step extends its lease."""
        return self.lease_s / 3


def make_url_password(url: str) -> str | None:
    """The password inside a ``scheme://user:password@host`` URL, if any."""
    found = re.search(r"://[^:/@]*:([^@]*)@", url)
    return found.group(1) if found else None


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def get_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment and ``.env``, plus explicit overrides.

    Raises :class:`ConfigurationError` naming every bad variable; the offending values are
    never echoed, since they may be secrets.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "?"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{env_name(field)} {message}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
