"""``cairn schedules add|list|pause|resume|delete``: cron schedules that start runs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from worker.cli.base import app, one_line_errors, print_json, settings
from worker.cli.runs import parse_inputs
from worker.client import Client

schedules = typer.Typer(help="Cron schedules that start workflow runs.", no_args_is_help=True)
app.add_typer(schedules, name="schedules")
console = Console()


@schedules.command("add")
@one_line_errors
def add(
    name: str,
    workflow: str,
    cron: str = typer.Option(..., "--cron", help="5 fields, or 6 with trailing seconds."),
    timezone: str = typer.Option("UTC", "--tz"),
    input_: list[str] = typer.Option([], "--input", "-i", help="Input as key=value."),
    inputs_file: Path | None = typer.Option(None, "--inputs-file"),
    version: int | None = typer.Option(None, "--version"),
    missed: str = typer.Option("skip", "--missed", help="skip, or catch_up."),
    catch_up_max: int = typer.Option(0, "--catch-up-max"),
) -> None:
    """Start WORKFLOW on every slot of --cron; print the schedule's id."""
    with Client(settings()) as client:
        schedule_id = client.add_schedule(
            name,
            workflow,
            cron,
            timezone=timezone,
            inputs=parse_inputs(input_, inputs_file),
            version=version,
            missed_policy=missed,
            catch_up_max=catch_up_max,
        )
    typer.echo(str(schedule_id))


@schedules.command("list")
@one_line_errors
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """List schedules with their next slot."""
    with Client(settings()) as client:
        found = client.list_schedules()
    if as_json:
        print_json(found)
        return
    table = Table("id", "name", "workflow", "cron", "tz", "status", "next")
    for s in found:
        nxt = s.next_fire_at.isoformat(timespec="seconds") if s.next_fire_at else ""
        table.add_row(str(s.id), s.name, s.workflow, s.cron, s.timezone, s.status, nxt)
    console.print(table)


@schedules.command("pause")
@one_line_errors
def pause(schedule_id: str) -> None:
    """Stop a schedule from firing."""
    with Client(settings()) as client:
        client.pause_schedule(schedule_id)
    typer.echo("paused")


@schedules.command("resume")
@one_line_errors
def resume(schedule_id: str) -> None:
    """Fire again from the next slot."""
    with Client(settings()) as client:
        client.resume_schedule(schedule_id)
    typer.echo("resumed")


@schedules.command("delete")
@one_line_errors
def delete(schedule_id: str) -> None:
    """Delete a schedule (its runs stay)."""
    with Client(settings()) as client:
        client.delete_schedule(schedule_id)
    typer.echo("deleted")
