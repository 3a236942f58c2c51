"""``cairn artifacts init|list|get|url``: the files steps produced."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from worker.artifacts import S3Store, make_store
from worker.cli.base import app, one_line_errors, print_json, settings
from worker.client import Client

artifacts = typer.Typer(help="Artifacts of runs, and the bucket.", no_args_is_help=True)
app.add_typer(artifacts, name="artifacts")
console = Console()


@artifacts.command("init")
@one_line_errors
def init() -> None:
    """Create the S3 bucket when missing (workers never create buckets themselves)."""
    s = settings()
    store = make_store(s)
    if isinstance(store, S3Store):
        created = store.ensure_bucket()
        typer.echo(f"bucket {s.s3_bucket} {'created' if created else 'already exists'}")
    else:
        store.check()
        typer.echo(f"local artifacts folder {s.artifacts_dir} is ready")


@artifacts.command("list")
@one_line_errors
def list_(run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """List a run's artifacts."""
    with Client(settings()) as client:
        found = client.list_artifacts(run_id)
    if as_json:
        print_json(found)
        return
    table = Table("name", "step", "attempt", "size", "sha256", "deleted")
    for a in found:
        table.add_row(
            a.name,
            a.step_key,
            str(a.attempt),
            str(a.size),
            a.sha256[:12],
            "yes" if a.deleted_at else "",
        )
    console.print(table)


@artifacts.command("get")
@one_line_errors
def get(
    run_id: str,
    name: str,
    step: str | None = typer.Option(None, "--step"),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the file."),
) -> None:
    """Download an artifact (sha256-verified)."""
    with Client(settings()) as client:
        data = client.download(run_id, name, step)
    output.write_bytes(data)
    typer.echo(f"{output} ({len(data)} bytes)")


@artifacts.command("url")
@one_line_errors
def url(
    run_id: str,
    name: str,
    step: str | None = typer.Option(None, "--step"),
    expires: int = typer.Option(3600, "--expires", help="Seconds the URL stays valid."),
) -> None:
    """Print a presigned GET URL of an artifact (S3 backend)."""
    with Client(settings()) as client:
        typer.echo(client.presigned_url(run_id, name, step, expires))
