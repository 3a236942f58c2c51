"""Commands about runs: start, status, watch, cancel, list, delete and purge."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from db.views import RunView
from worker.cli.base import app, one_line_errors, print_json, read_text, settings
from worker.client import Client
from worker.diff import render as render_diff
from worker.errors import DefinitionError

#: ``cairn watch`` exit codes by the run's outcome.
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}
console = Console(stderr=False)


def _client(check_steps: bool = True) -> Client:
    return Client(settings(), load_step_modules=check_steps)


def parse_inputs(pairs: list[str], inputs_file: Path | None) -> dict[str, Any]:
    """``k=v`` pairs (v parsed as JSON when it is JSON, else a string) over a JSON file."""
    inputs: dict[str, Any] = {}
    if inputs_file is not None:
        text = read_text(inputs_file, "--inputs-file")
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise DefinitionError(
                "--inputs-file", f"cannot read JSON from {inputs_file}: {exc}"
            ) from None
        except RecursionError:
            raise DefinitionError("--inputs-file", "is nested too deeply") from None
        if not isinstance(loaded, dict):
            raise DefinitionError("--inputs-file", "must hold a JSON object")
        inputs.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise DefinitionError("--input", f"{pair!r} is not key=value")
        try:
            inputs[key] = json.loads(raw)
        except ValueError:
            inputs[key] = raw
        except RecursionError:
            raise DefinitionError(f"--input {key}", "is nested too deeply") from None
    return inputs


@app.command()
@one_line_errors
def start(
    workflow: str = typer.Argument(..., help="A definition file (YAML/JSON) or a workflow name."),
    input_: list[str] = typer.Option([], "--input", "-i", help="Input as key=value (repeat)."),
    inputs_file: Path | None = typer.Option(None, "--inputs-file", help="JSON object of inputs."),
    version: int | None = typer.Option(None, "--version", help="Version of a named workflow."),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key", "-k"),
    project: str = typer.Option("default", "--project"),
    budget: str | None = typer.Option(
        None, "--budget", help="USD: past this, the run pauses and asks for a new budget."
    ),
    priority: int | None = typer.Option(
        None, "--priority", help="0 (lowest) to 9 for every step of the run."
    ),
    watch_: bool = typer.Option(False, "--watch", "-w", help="Watch it until it ends."),
    as_json: bool = typer.Option(False, "--json"),
    check_steps: bool = typer.Option(True, help="Check step names against CAIRN_STEP_MODULES."),
) -> None:
    """Start a run of a definition file or a registered workflow; print its id."""
    inputs = parse_inputs(input_, inputs_file)
    path = Path(workflow)
    with _client(check_steps) as client:
        if path.suffix in {".yaml", ".yml", ".json"} or path.exists():
            run_id = client.start_run(
                spec=read_text(path, "workflow"),
                inputs=inputs,
                idempotency_key=idempotency_key,
                project=project,
                budget_usd=budget,
                priority=priority,
            )
        else:
            run_id = client.start_run(
                workflow,
                version=version,
                inputs=inputs,
                idempotency_key=idempotency_key,
                project=project,
                budget_usd=budget,
                priority=priority,
            )
        if as_json:
            print_json({"run_id": run_id})
        else:
            typer.echo(str(run_id))
        if watch_:
            raise typer.Exit(watch_run(client, str(run_id), timeout=None))


@app.command()
@one_line_errors
def fork(
    run_id: str,
    from_step: str = typer.Option(..., "--from", help="The first step to run again."),
    input_: list[str] = typer.Option(
        [], "--input", "-i", help="Run input to change, key=value (repeat)."
    ),
    step_input: list[str] = typer.Option(
        [], "--step-input", help="Input of one step, STEP.key=value (repeat)."
    ),
    label: str | None = typer.Option(None, "--label", help="A name for the branch."),
    watch_: bool = typer.Option(False, "--watch", "-w", help="Watch it until it ends."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fork a run at a step: what came before is reused (not run or paid again); the step
    and everything after it run with the changed inputs. Print the new run's id."""
    per_step: dict[str, dict[str, Any]] = {}
    for pair in step_input:
        target, dot, rest = pair.partition(".")
        if not dot or not target:
            raise DefinitionError("--step-input", f"{pair!r} is not STEP.key=value")
        per_step.setdefault(target, {}).update(parse_inputs([rest], None))
    with _client(check_steps=False) as client:
        new_id = client.fork(
            run_id,
            from_step,
            inputs=parse_inputs(input_, None),
            step_inputs=per_step,
            label=label,
        )
        if as_json:
            print_json({"run_id": new_id})
        else:
            typer.echo(str(new_id))
        if watch_:
            raise typer.Exit(watch_run(client, str(new_id), timeout=None))


@app.command()
@one_line_errors
def diff(run_a: str, run_b: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Compare two runs of one workflow (a run and its fork) step by step: inputs,
    outputs, artifacts (by sha256) and costs that differ."""
    with _client(check_steps=False) as client:
        result = client.diff(run_a, run_b)
    if as_json:
        print_json(result)
        return
    typer.echo(render_diff(result))


@app.command()
@one_line_errors
def status(run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a run and its steps."""
    with _client(check_steps=False) as client:
        view = client.get_run(run_id)
    if as_json:
        print_json(view)
        return
    print_run(view)


@app.command()
@one_line_errors
def watch(
    run_id: str,
    timeout: float | None = typer.Option(None, help="Give up after this many seconds."),
) -> None:
    """Follow a run live until it ends; the exit code is its outcome (0, 1 failed, 3 cancelled)."""
    with _client(check_steps=False) as client:
        raise typer.Exit(watch_run(client, run_id, timeout))


@app.command()
@one_line_errors
def cancel(run_id: str, reason: str = typer.Option("", help="Why, for the event log.")) -> None:
    """Cancel a run: steps not started are cancelled, running ones stop at their next beat."""
    with _client(check_steps=False) as client:
        done = client.cancel(run_id, reason)
    typer.echo("cancelled" if done else "the run had already ended")


def watch_run(client: Client, run_id: str, timeout: float | None) -> int:
    """Show live progress until the run ends; return the exit code of its outcome."""
    deadline = None if timeout is None else time.monotonic() + timeout
    view = client.get_run(run_id)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(view.status, total=len(view.steps), detail="")
        while True:
            done = sum(s.status == "succeeded" for s in view.steps)
            running = ", ".join(s.key for s in view.steps if s.status == "running") or "-"
            progress.update(
                task,
                completed=done,
                description=view.status,
                detail=f"running: {running}  cost: ${view.cost_usd:.4f}",
            )
            if view.finished or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(0.25)
            view = client.get_run(run_id)
    print_run(view)
    if not view.finished:
        typer.echo(f"run {view.id} is still {view.status}", err=True)
        return 2
    return EXIT_CODES.get(view.status, 1)


def print_run(view: RunView) -> None:
    """Print a run's status, cost and steps as a table; a map's elements in one line, and
    the run's place in its tree (parent, children)."""
    console.print(f"run [bold]{view.id}[/bold]: {view.status}   cost ${view.cost_usd:.6f}")
    if view.parent_step:
        console.print(f"child of run {view.parent_run_id} (its step {view.parent_step})")
    elif view.parent_run_id:
        console.print(f"forked from run {view.parent_run_id}")
    elements: dict[str, Counter[str]] = {}
    for s in view.steps:
        if s.map_of is not None:
            elements.setdefault(s.map_of, Counter())[s.status] += 1
    table = Table("step", "task", "status", "attempt", "duration")
    for s in view.steps:
        if s.map_of is not None:
            continue
        duration = (
            f"{(s.finished_at - s.started_at).total_seconds():.2f}s"
            if s.started_at and s.finished_at
            else ""
        )
        status = s.status + (" (reused)" if s.reused_from else "")
        if s.key in elements:
            counts = elements[s.key]
            status += f" - map of {sum(counts.values())}: " + ", ".join(
                f"{n} {state}" for state, n in sorted(counts.items())
            )
        table.add_row(s.key, s.task, status, str(s.attempt), duration)
    console.print(table)
    for child in view.children:
        console.print(
            f"  {child.step} -> child run {child.run_id} ({child.workflow}, key {child.key}): "
            f"{child.status}"
        )
    if view.paused:
        console.print(f"[yellow]paused[/yellow]: {view.paused.get('message')}")
        console.print(
            f"to go on: cairn approvals approve {view.paused.get('approval_id')} --budget AMOUNT",
            soft_wrap=True,
        )
    if view.error:
        kind = view.error.get("type") or view.error.get("reason")
        console.print(f"[red]error[/red]: {kind}: {view.error.get('message')}")


@app.command()
@one_line_errors
def steps(run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """List a run's steps with status, attempt and error."""
    with _client(check_steps=False) as client:
        view = client.get_run(run_id)
    if as_json:
        print_json(list(view.steps))
        return
    table = Table("step", "status", "attempt", "error")
    for s in view.steps:
        error = f"{s.error.get('type')}: {s.error.get('message')}" if s.error else ""
        table.add_row(s.key, s.status, f"{s.attempt}/{s.max_attempts}", error[:80])
    console.print(table)


@app.command()
@one_line_errors
def costs(
    run_id: str | None = typer.Argument(None, help="A run; leave out with --by model."),
    by: str = typer.Option("step", "--by", help="step (one run) or model (all runs)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show costs: a run's per step and by model, or every run's by provider/model."""
    if by not in {"step", "model"}:
        raise DefinitionError("--by", "must be step or model")
    with _client(check_steps=False) as client:
        if run_id is None:
            if by != "model":
                raise DefinitionError("run", "name a run, or use --by model for all runs")
            totals = client.cost_totals()
            if as_json:
                print_json(totals)
            else:
                console.print(_model_table(totals))
            return
        summary = client.costs(run_id)
    if as_json:
        print_json(summary)
        return
    if by == "step":
        table = Table("step", "tokens in", "tokens out", "usd")
        for s in summary.steps:
            table.add_row(s.key, str(s.input_tokens), str(s.output_tokens), f"{s.usd:.6f}")
        console.print(table)
    console.print(_model_table(list(summary.by_model)))
    console.print(f"total ${summary.total_usd:.6f}")


def _model_table(totals: list[Any]) -> Table:
    table = Table("provider", "model", "records", "tokens in", "tokens out", "usd")
    for m in totals:
        table.add_row(
            m.provider,
            m.model,
            str(m.records),
            str(m.input_tokens),
            str(m.output_tokens),
            f"{m.usd:.6f}",
        )
    return table


@app.command()
@one_line_errors
def events(run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a run's event log, oldest first."""
    with _client(check_steps=False) as client:
        log = client.events(run_id)
    if as_json:
        print_json(log)
        return
    for e in log:
        where = f" {e.step_key}" if e.step_key else ""
        if e.step_key and e.attempt is not None:
            where += f"#{e.attempt}"
        # What the event carries says why (a pause's budget, a decision's author), briefly.
        data = f"  {json.dumps(e.data, default=str)[:160]}" if e.data else ""
        typer.echo(f"{e.at.isoformat(timespec='milliseconds')} {e.kind}{where}{data}")


@app.command()
@one_line_errors
def retry(run_id: str) -> None:
    """Re-run a failed or cancelled run from the steps that did not succeed."""
    with _client(check_steps=False) as client:
        queued = client.retry(run_id)
    typer.echo(f"run {run_id} re-opened; {queued} step(s) queued")


runs_app = typer.Typer(help="List runs; delete ended ones.")
app.add_typer(runs_app, name="runs")


@runs_app.callback(invoke_without_command=True)
@one_line_errors
def runs(
    ctx: typer.Context,
    status_: str | None = typer.Option(None, "--status", help="Only runs in this status."),
    workflow: str | None = typer.Option(None, "--workflow"),
    limit: int = typer.Option(20, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List runs, newest first (``cairn runs delete``/``purge`` delete ended ones)."""
    if ctx.invoked_subcommand is not None:
        return
    with _client(check_steps=False) as client:
        found = client.list_runs(status=status_, workflow=workflow, limit=limit)
    if as_json:
        print_json(found)
        return
    table = Table("run", "workflow", "status", "cost", "created")
    for r in found:
        table.add_row(
            str(r.id),
            f"{r.workflow} v{r.version}",
            r.status,
            f"{r.cost_usd:.4f}",
            r.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@runs_app.command("delete")
@one_line_errors
def delete_run(run_id: str) -> None:
    """Delete an ended run with everything it owns (rows and stored objects).

    A run that has not ended is refused: cancel it first.
    """
    with _client(check_steps=False) as client:
        client.delete_run(run_id)
    typer.echo(f"run {run_id} deleted")


@runs_app.command("purge")
@one_line_errors
def purge_runs(
    older_than: str = typer.Option(
        ..., "--older-than", help="Runs that ended this long ago: 30d, 12h, 90m, 45s, 2w."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count them."),
) -> None:
    """Delete every ended run that finished more than --older-than ago."""
    age = parse_duration(older_than, "--older-than")
    with _client(check_steps=False) as client:
        count = client.purge_runs(age, dry_run=dry_run)
    typer.echo(f"{count} run(s) {'would be deleted' if dry_run else 'deleted'}")


#: Seconds per unit of a duration such as ``30d``.
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str, field: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` as a positive timedelta."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise DefinitionError(field, f"{text!r} is not a duration such as 30d, 12h, 90m or 45s")
    seconds = float(match[1]) * _UNITS[match[2]]
    try:
        age = timedelta(seconds=seconds)
    except OverflowError:
        raise DefinitionError(field, f"{text!r} is longer than any calendar") from None
    if age <= timedelta(0):
        raise DefinitionError(field, f"{text!r} must be longer than zero")
    return age
