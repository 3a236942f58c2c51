"""Commands that run cairn's processes: migrate, worker, beat, flower."""

from __future__ import annotations

import ipaddress
import os

import typer

from worker.cli.base import app, one_line_errors, settings
from worker.errors import ConfigurationError


@app.command()
@one_line_errors
def version() -> None:
    """Print cairn's version."""
    from worker import __version__

    typer.echo(__version__)


@app.command()
@one_line_errors
def migrate(
    revision: str = typer.Argument("head", help="Alembic revision to upgrade to."),
) -> None:
    """Create or upgrade the database schema (CAIRN_DATABASE_URL)."""
    from db import migrate as migrations

    s = settings()
    migrations.upgrade(s, revision)
    typer.echo(f"database at {s.safe_database_url} is at {revision}")


@app.command()
@one_line_errors
def worker(
    concurrency: int = typer.Option(0, "-c", "--concurrency", help="Processes (default: setting)."),
    queues: str = typer.Option("", "-Q", "--queues", help="Comma-separated queues to consume."),
    pool: str = typer.Option("prefork", "--pool", help="Celery pool: prefork or threads."),
    name: str = typer.Option("", "-n", "--hostname", help="Worker node name."),
) -> None:
    """Run a worker: it executes steps from the queues."""
    from tasks import create_app

    s = settings()
    argv = [
        "worker",
        f"--loglevel={s.log_level}",
        f"--concurrency={concurrency or s.worker_concurrency}",
        f"--pool={pool}",
        f"--queues={queues or s.default_queue}",
        "--without-gossip",
        "--without-mingle",
    ]
    if name:
        argv.append(f"--hostname={name}")
    create_app(s).worker_main(argv)


@app.command()
@one_line_errors
def beat() -> None:
    """Run beat: the reaper, the reconciler and the schedules, on their intervals."""
    from tasks import create_app

    s = settings()
    # The base Scheduler keeps its state in memory: every cairn periodic task is safe to
    # run again, and the default PersistentScheduler would write a shelve (pickle) file.
    create_app(s).start(
        ["beat", "--scheduler", "celery.beat:Scheduler", f"--loglevel={s.log_level}"]
    )


@app.command()
@one_line_errors
def flower() -> None:
    """Run Flower on the same broker, with basic auth, on loopback by default."""
    from tasks import create_app

    s = settings()
    loopback = _is_loopback(s.flower_address)
    if s.flower_password is None and not loopback:
        raise ConfigurationError(
            f"Flower would listen on {s.flower_address} without a password; "
            "set CAIRN_FLOWER_PASSWORD or bind it to 127.0.0.1"
        )
    if s.flower_password is not None:
        # Through the environment, not argv: a password on the command line shows in ps.
        os.environ["FLOWER_BASIC_AUTH"] = f"{s.flower_user}:{s.flower_password.get_secret_value()}"
    create_app(s).start(["flower", f"--address={s.flower_address}", f"--port={s.flower_port}"])


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
