"""Commands that run cairn's processes: migrate, worker, beat, flower, api."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import typer

from worker.cli.base import app, one_line_errors, settings
from worker.errors import ConfigurationError
from worker.settings import Settings


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
    from worker import preflight
    from worker.registry import registry

    s = settings()
    preflight.check_worker(s, registry)
    if not s.step_modules:
        typer.echo(
            "warning: CAIRN_STEP_MODULES is empty: this worker knows no steps "
            "(set it to the modules of your @step functions)",
            err=True,
        )
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
def workers(as_json: bool = typer.Option(False, "--json")) -> None:
    """List worker processes: status, queues, step names, version, last heartbeat."""
    from rich.console import Console
    from rich.table import Table

    from worker.cli.base import print_json
    from worker.client import Client

    with Client(settings()) as client:
        found = client.list_workers()
    if as_json:
        print_json(found)
        return
    table = Table("worker", "status", "queues", "steps", "version", "heartbeat")
    for w in found:
        beat_at = w.heartbeat_at.isoformat(timespec="seconds") if w.heartbeat_at else ""
        table.add_row(
            w.name, w.status, ",".join(w.queues), str(len(w.step_names)), w.version, beat_at
        )
    Console().print(table)


@app.command()
@one_line_errors
def beat() -> None:
    """Run beat: the reaper, the reconciler and the schedules, on their intervals."""
    from tasks import create_app
    from worker import preflight

    s = settings()
    preflight.check_beat(s)
    # The base Scheduler keeps its state in memory: every cairn periodic task is safe to
    # run again, and the default PersistentScheduler would write a shelve (pickle) file.
    create_app(s).start(
        ["beat", "--scheduler", "tasks.beat:Scheduler", f"--loglevel={s.log_level}"]
    )


@app.command()
@one_line_errors
def flower() -> None:
    """Run Flower on the same broker, with basic auth, on loopback by default.

    With a password, every endpoint but /healthcheck asks for it, /metrics included.
    """
    from tasks import create_app
    from worker.cli.flower_auth import protect_flower

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
    protect_flower()  # Flower itself leaves /metrics and its static files open
    create_app(s).start(["flower", f"--address={s.flower_address}", f"--port={s.flower_port}"])


def _is_loopback(address: str) -> bool:
    from worker.preflight import is_loopback

    return is_loopback(address)


@app.command()
@one_line_errors
def api(
    host: str | None = typer.Option(None, help="Address to listen on [CAIRN_API_HOST]"),
    port: int | None = typer.Option(None, help="Port [CAIRN_API_PORT]"),
    workers: int | None = typer.Option(None, help="uvicorn processes [CAIRN_API_WORKERS]"),
) -> None:
    """Serve the HTTP API (OpenAPI at /docs), on loopback unless TLS is in front."""
    from worker import preflight
    from worker.api.server import serve

    overrides = {"api_host": host, "api_port": port, "api_workers": workers}
    given = {k: v for k, v in overrides.items() if v is not None}
    s = settings()
    if given:
        s = Settings.model_validate({**s.model_dump(), **given})
        # uvicorn's processes read their settings from the environment.
        for field, value in given.items():
            os.environ[f"CAIRN_{field.upper()}"] = str(value)
    preflight.check_api(s)
    serve(s)


#: The module of the demo workflow's steps, loaded by ``cairn dev``.
DEMO_STEPS = "tasks.examples"


@app.command()
@one_line_errors
def dev(
    demo: bool = typer.Option(False, "--demo", help="Run the example workflow, then stop."),
    private_redis: bool = typer.Option(
        False, "--private-redis", help="Start a private Redis even if one runs on localhost."
    ),
) -> None:
    """Run a worker, beat and Flower (and Redis if none runs) until Ctrl-C."""
    from db import migrate as migrations
    from worker.app import make_celery
    from worker.devstack import Supervisor, cairn_argv, choose_broker, free_port

    s = settings()
    if DEMO_STEPS not in s.step_modules:  # the dev stack always carries the demo's steps
        s = s.model_copy(update={"step_modules": [*s.step_modules, DEMO_STEPS]})
    explicit = s.broker_url if "broker_url" in s.model_fields_set else None
    log_dir = Path(".cairn-dev")
    log_dir.mkdir(exist_ok=True)
    supervisor = Supervisor(log_dir)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        broker = choose_broker(explicit, private_redis, supervisor)
        s = s.model_copy(update={"broker_url": broker})
        migrations.upgrade(s)
        port = s.flower_port if _port_free(s.flower_port) else free_port()
        api_port = s.api_port if _port_free(s.api_port) else free_port()
        env = {
            **os.environ,
            "CAIRN_BROKER_URL": broker,
            "CAIRN_FLOWER_PORT": str(port),
            "CAIRN_FLOWER_ADDRESS": "127.0.0.1",
            "CAIRN_API_PORT": str(api_port),
            "CAIRN_API_HOST": "127.0.0.1",
            "CAIRN_STEP_MODULES": ",".join(s.step_modules),
        }
        node = f"dev-{os.getpid()}@{socket.gethostname()}"
        for name, argv in (
            ("worker", cairn_argv("worker", "--hostname", node)),
            ("beat", cairn_argv("beat")),
            ("flower", cairn_argv("flower")),
            ("api", cairn_argv("api")),
        ):
            supervisor.spawn(name, argv, env)
        for name, child in supervisor.children:
            typer.echo(f"started {name} (pid {child.pid}, log {log_dir / (name + '.log')})")
        _wait_for_worker(make_celery(s), node, supervisor)
        _wait_for_http(f"http://127.0.0.1:{api_port}/healthz", "the API", supervisor)
        flower_url = f"http://127.0.0.1:{port}"
        typer.echo(f"broker {s.safe_broker_url}, database {s.safe_database_url}")
        typer.echo(f"Flower: {flower_url}")
        typer.echo(
            f"HTTP API: http://127.0.0.1:{api_port} (OpenAPI at /docs; make a key with "
            "`cairn api-keys create --tenant default`)"
        )
        if demo:
            code = _run_demo(s, flower_url)
            raise typer.Exit(code)
        typer.echo("cairn dev is running; Ctrl-C stops every process")
        while True:
            time.sleep(1)
            supervisor.check_alive()
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        supervisor.stop()
        typer.echo("all processes stopped")


def _exit_on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_worker(celery_app: Any, node: str, supervisor: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            supervisor.check_alive()
            if any(node in reply for reply in celery_app.control.ping([node], timeout=0.5)):
                return
        raise ConfigurationError(f"the worker did not answer within {timeout:g} s; see its log")
    finally:
        celery_app.close()


def _wait_for_http(url: str, what: str, supervisor: Any, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback http
                return
        except OSError:
            time.sleep(0.2)
    raise ConfigurationError(f"{what} did not answer {url} within {timeout:g} s; see its log")


def _run_demo(s: Settings, flower_url: str) -> int:
    """Start the example workflow, show its progress, then print its summary."""
    import tasks.examples
    from worker.cli.runs import watch_run
    from worker.client import Client

    spec_file = Path(tasks.examples.__file__).resolve().parent / "report.yaml"
    if not spec_file.exists():
        raise ConfigurationError(f"the demo workflow {spec_file} is missing; reinstall cairn")
    with Client(s, load_step_modules=True) as client:
        run_id = client.start_run(spec=spec_file.read_text(), inputs={"topic": "durable workflows"})
        typer.echo(f"demo run {run_id}: {spec_file.name}")
        code = watch_run(client, str(run_id), timeout=300)
        costs = client.costs(run_id)
        for m in costs.by_model:
            typer.echo(
                f"  {m.provider}/{m.model}: {m.records} calls, "
                f"{m.input_tokens}+{m.output_tokens} tokens, ${m.usd:.6f}"
            )
        for a in client.list_artifacts(run_id):
            typer.echo(
                f"  artifact {a.name} from {a.step_key}: {a.size} bytes, "
                f"sha256 {a.sha256[:12]}..., {a.key}"
            )
        typer.echo(f"total cost ${costs.total_usd:.6f}; watch workers and tasks at {flower_url}")
    return code
