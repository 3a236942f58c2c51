"""Checks a worker or beat runs before it starts, so a bad setting stops it at once.

Settings validate their own shape; what needs the filesystem or an import (an artifacts
folder that cannot be written, a database driver not installed, a step module that does
not import) is checked here. Each failure is one :class:`ConfigurationError` naming the
variable; values that may be secrets are never echoed. Servers are not contacted: a
server that is away is an outage the run waits out, not a configuration error.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path

from sqlalchemy import URL

from worker.artifacts import make_store
from worker.errors import ConfigurationError
from worker.registry import StepRegistry
from worker.settings import Settings


def check_database(settings: Settings) -> None:
    """The driver imports; an SQLite file's folder exists and is writable."""
    url = settings.db_url
    _check_driver(
        url,
        "CAIRN_DATABASE_URL needs the driver {driver}, which does not import ({missing}); "
        "install it or use postgresql:// (psycopg2)",
    )
    if settings.is_sqlite and url.database and url.database != ":memory:":
        _check_folder(Path(url.database).resolve().parent, "CAIRN_DATABASE_URL", create=False)


def check_artifacts(settings: Settings) -> None:
    """The local folder can be created and written; the S3 settings are well formed."""
    if settings.artifact_backend == "local":
        _check_folder(settings.artifacts_dir, "CAIRN_ARTIFACTS_DIR", create=True)
    else:
        make_store(settings)  # refuses a bad bucket name, endpoint or half a key pair


def check_worker(settings: Settings, registry: StepRegistry) -> None:
    """Everything a worker needs before it consumes: database, artifacts, step modules."""
    check_database(settings)
    check_artifacts(settings)
    for module in settings.step_modules:
        try:
            registry.load_modules([module])
        except ConfigurationError:
            raise
        except Exception as exc:  # the user's module may fail in any way while importing
            raise ConfigurationError(
                f"CAIRN_STEP_MODULES: importing {module!r} failed: {type(exc).__name__}"
            ) from exc


def check_beat(settings: Settings) -> None:
    """What beat needs: the database and the store retention deletes from."""
    check_database(settings)
    check_artifacts(settings)


def check_api(settings: Settings) -> None:
    """What the API needs: its async driver, the store it streams artifacts from, and a
    listening address that does not send API keys over a network in clear."""
    check_database(settings)
    _check_driver(
        settings.async_db_url,
        "the API needs the async driver {driver} for CAIRN_DATABASE_URL, which does not "
        "import ({missing}); reinstall cairn",
    )
    check_artifacts(settings)
    check_api_address(settings)


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_api_address(settings: Settings) -> None:
    """Refuse to listen off loopback unless a TLS-terminating proxy is declared.

    API keys travel in a header: in clear on a network they can be read and replayed.
    """
    if not is_loopback(settings.api_host) and not settings.api_behind_tls_proxy:
        raise ConfigurationError(
            f"the API would listen on {settings.api_host} without TLS; put a TLS-terminating "
            "proxy in front and set CAIRN_API_BEHIND_TLS_PROXY=true, or bind it to 127.0.0.1 "
            "(CAIRN_API_HOST)"
        )


def _check_driver(url: URL, message: str) -> None:
    """:class:`ConfigurationError` with ``message`` unless ``url``'s driver imports."""
    try:
        url.get_dialect().import_dbapi()
    except ImportError as exc:
        raise ConfigurationError(
            message.format(driver=repr(url.drivername), missing=exc.name or exc)
        ) from None


def _check_folder(folder: Path, variable: str, *, create: bool) -> None:
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise ConfigurationError(f"{variable}: the folder {folder} does not exist")
        fd, probe = tempfile.mkstemp(prefix=".cairn-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigurationError(
            f"{variable}: the folder {folder} cannot be written ({exc.strerror})"
        ) from None
