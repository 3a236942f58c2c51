"""``cairn definitions register|list|show``: versioned workflow definitions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from worker.cli.base import app, one_line_errors, print_json, read_text, settings
from worker.client import Client

definitions = typer.Typer(help="Register and read workflow definitions.", no_args_is_help=True)
app.add_typer(definitions, name="definitions")
console = Console()


@definitions.command("register")
@one_line_errors
def register(
    file: Path,
    project: str = typer.Option("default", "--project"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Validate and store a definition file; the same spec keeps its version."""
    text = read_text(file, "file")
    with Client(settings(), load_step_modules=True) as client:
        view = client.register_definition(text, project=project)
    if as_json:
        print_json(view)
    else:
        typer.echo(f"{view.name} version {view.version} ({view.checksum[:12]})")


@definitions.command("list")
@one_line_errors
def list_(
    project: str = typer.Option("default", "--project"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List every stored version of every workflow."""
    with Client(settings()) as client:
        found = client.list_definitions(project)
    if as_json:
        print_json(found)
        return
    table = Table("workflow", "version", "steps", "checksum", "created")
    for d in found:
        table.add_row(
            d.name,
            str(d.version),
            str(len(d.spec.get("steps", []))),
            d.checksum[:12],
            d.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@definitions.command("show")
@one_line_errors
def show(
    name: str,
    version: int | None = typer.Option(None, "--version"),
    project: str = typer.Option("default", "--project"),
    as_json: bool = typer.Option(True, "--json", help="JSON (the only format of show)."),
) -> None:
    """Print a stored definition as JSON (the newest version unless --version)."""
    del as_json
    with Client(settings()) as client:
        print_json(client.get_definition(name, version, project))
