"""``cairn approvals list|show|approve|reject``, ``cairn signal`` and ``cairn limits``:
the person in the loop, and the ceiling on spend."""

from __future__ import annotations

import getpass
import json
from decimal import Decimal

import typer
from rich.console import Console
from rich.table import Table

from db.views import ApprovalView
from worker.cli.base import app, one_line_errors, print_json, settings
from worker.client import Client
from worker.errors import DefinitionError

approvals = typer.Typer(
    help="Approval requests: steps and budgets waiting for a person.", no_args_is_help=True
)
app.add_typer(approvals, name="approvals")
limits = typer.Typer(
    help="The tenant's daily and monthly spend limits, and its quota of running steps.",
    no_args_is_help=True,
)
app.add_typer(limits, name="limits")
console = Console()

BY_HELP = "Who decides, for the record (default: your user name)."


def _me() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this container
        return "cli"


@approvals.command("list")
@one_line_errors
def list_(
    status: str = typer.Option(
        "pending", "--status", help="pending, approved, rejected, expired, cancelled, or all."
    ),
    run_id: str | None = typer.Option(None, "--run", help="Only this run's requests."),
    group: str | None = typer.Option(None, "--group", help="Only requests to this group."),
    limit: int = typer.Option(100, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List approval requests, newest first (pending ones unless --status says otherwise)."""
    with Client(settings()) as client:
        found = client.list_approvals(
            None if status == "all" else status, run_id=run_id, group=group, limit=limit
        )
    if as_json:
        print_json(found)
        return
    # The id is what the next command needs: shown whole, never cut (`show` has the run).
    table = Table("status", "request")
    table.add_column("id", no_wrap=True, min_width=36)
    for a in found:
        about = [f"asked by {a.requested_by}"]
        if a.group:
            about.append(f"group {a.group}")
        if a.expires_at:
            about.append(f"expires {a.expires_at.isoformat(timespec='minutes')}")
        table.add_row(a.status, f"{a.title}\n[dim]{', '.join(about)}[/dim]", str(a.id))
    console.print(table)


@approvals.command("show")
@one_line_errors
def show(approval_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one request: what was asked, by whom, and how it was decided."""
    with Client(settings()) as client:
        found = client.get_approval(approval_id)
    if as_json:
        print_json(found)
        return
    _print(found)


@approvals.command("approve")
@one_line_errors
def approve(
    approval_id: str,
    by: str | None = typer.Option(None, "--by", help=BY_HELP),
    comment: str | None = typer.Option(None, "--comment", "-m"),
    budget: str | None = typer.Option(
        None, "--budget", help="For a budget request: the new budget (or tenant limit) in USD."
    ),
) -> None:
    """Approve a pending request: the waiting step (or paused run) goes on."""
    with Client(settings()) as client:
        decided = client.approve(approval_id, by=by or _me(), comment=comment, budget_usd=budget)
    typer.echo(f"approved by {decided.decided_by}")


@approvals.command("reject")
@one_line_errors
def reject(
    approval_id: str,
    by: str | None = typer.Option(None, "--by", help=BY_HELP),
    comment: str | None = typer.Option(None, "--comment", "-m"),
) -> None:
    """Reject a pending request: the step fails (a budget request: the run is cancelled)."""
    with Client(settings()) as client:
        decided = client.reject(approval_id, by=by or _me(), comment=comment)
    typer.echo(f"rejected by {decided.decided_by}")


@app.command()
@one_line_errors
def signal(
    run_id: str,
    name: str,
    payload: str = typer.Option("null", "--payload", "-p", help="The JSON payload."),
) -> None:
    """Send signal NAME to a run: delivered once, to the step that waits for it."""
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise DefinitionError("--payload", f"is not JSON: {exc}") from None
    except RecursionError:
        raise DefinitionError("--payload", "is nested too deeply") from None
    with Client(settings()) as client:
        signal_id = client.signal(run_id, name, body)
    typer.echo(str(signal_id))


@limits.command("show")
@one_line_errors
def limits_show(as_json: bool = typer.Option(False, "--json")) -> None:
    """The tenant's spend limits and what it spent today and this month (UTC)."""
    with Client(settings()) as client:
        found = client.spend_limits()
    if as_json:
        print_json(found)
        return
    _print_limits(found.daily_limit_usd, found.spent_today_usd, "today")
    _print_limits(found.monthly_limit_usd, found.spent_this_month_usd, "this month")


@limits.command("set")
@one_line_errors
def limits_set(
    daily: str | None = typer.Option(None, "--daily", help="USD per UTC day; omit for none."),
    monthly: str | None = typer.Option(None, "--monthly", help="USD per UTC month."),
) -> None:
    """Set the tenant's spend limits (an option left out removes that limit)."""
    with Client(settings()) as client:
        found = client.set_spend_limits(daily_usd=daily, monthly_usd=monthly)
    _print_limits(found.daily_limit_usd, found.spent_today_usd, "today")
    _print_limits(found.monthly_limit_usd, found.spent_this_month_usd, "this month")


@limits.command("quota")
@one_line_errors
def limits_quota(
    max_running_steps: int | None = typer.Argument(
        None, help="Steps of the tenant running at once, at most; omit to show it."
    ),
    clear: bool = typer.Option(False, "--clear", help="Remove the quota."),
) -> None:
    """Show or set the tenant's quota of steps running at once (across every worker)."""
    with Client(settings()) as client:
        if clear:
            found = client.set_quota(None)
        elif max_running_steps is not None:
            found = client.set_quota(max_running_steps)
        else:
            found = client.quota()
    typer.echo(f"at most {found} steps running at once" if found else "no quota")


def _print_limits(limit: Decimal | None, spent: Decimal, when: str) -> None:
    typer.echo(f"{when}: spent ${spent} of " + (f"${limit}" if limit is not None else "no limit"))


def _print(a: ApprovalView) -> None:
    console.print(f"[bold]{a.title}[/bold]  ({a.kind}, {a.status})")
    console.print(f"id {a.id}   run {a.run_id}   asked by {a.requested_by}")
    if a.group:
        console.print(f"group {a.group}")
    console.print(f"asked {a.created_at.isoformat(timespec='seconds')}", end="")
    if a.expires_at:
        console.print(f"   expires {a.expires_at.isoformat(timespec='seconds')} ({a.on_timeout})")
    else:
        console.print()
    if a.details:
        console.print(json.dumps(a.details, indent=2, ensure_ascii=False))
    if a.decided_by:
        when = a.decided_at.isoformat(timespec="seconds") if a.decided_at else ""
        console.print(f"decided by {a.decided_by} {when}" + (f": {a.comment}" if a.comment else ""))
    if a.new_budget_usd is not None:
        console.print(f"new budget ${a.new_budget_usd}")
    if a.escalated_from_id:
        console.print(f"escalated from {a.escalated_from_id}")
