"""``cairn api-keys create|list|revoke --tenant T``: the keys of the HTTP API."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from worker.cli.base import app, one_line_errors, print_json, settings

keys = typer.Typer(help="API keys of the HTTP API, one tenant each.", no_args_is_help=True)
app.add_typer(keys, name="api-keys")
console = Console()
Tenant = typer.Option(..., "--tenant", help="The tenant the key acts for.")


@keys.command("create")
@one_line_errors
def create(
    tenant: str = Tenant,
    name: str = typer.Option("default", "--name", help="What the key is for."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Make a key of TENANT and print it; it is shown this once and stored only hashed."""
    from db.session import make_engine, run_transaction
    from db.types import utcnow
    from worker.apikeys import create_key

    engine = make_engine(settings())
    try:
        view, token = run_transaction(engine, lambda s: create_key(s, tenant, name, utcnow()))
    finally:
        engine.dispose()
    if as_json:
        print_json({"id": view.id, "tenant": view.tenant, "name": view.name,
                    "prefix": view.prefix, "token": token})  # fmt: skip
        return
    typer.echo(token)
    typer.echo(
        f"API key {view.prefix} of tenant {tenant!r}: store it now, it cannot be shown again "
        "(send it as `Authorization: Bearer <key>`)",
        err=True,
    )


@keys.command("list")
@one_line_errors
def list_(tenant: str = Tenant, as_json: bool = typer.Option(False, "--json")) -> None:
    """The tenant's keys (never the keys themselves)."""
    from db.session import make_engine, transaction
    from worker.apikeys import list_keys

    engine = make_engine(settings())
    try:
        with transaction(engine) as session:
            found = list_keys(session, tenant)
    finally:
        engine.dispose()
    if as_json:
        print_json(found)
        return
    table = Table("id", "name", "prefix", "created", "last used", "revoked")
    for k in found:
        table.add_row(
            str(k.id),
            k.name,
            k.prefix,
            k.created_at.isoformat(timespec="seconds"),
            k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "",
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
        )
    console.print(table)


@keys.command("revoke")
@one_line_errors
def revoke(key: str, tenant: str = Tenant) -> None:
    """Revoke KEY (its id or prefix): requests with it are refused from now on."""
    from db.session import make_engine, run_transaction
    from db.types import utcnow
    from worker.apikeys import revoke_key

    engine = make_engine(settings())
    try:
        view = run_transaction(engine, lambda s: revoke_key(s, tenant, key, utcnow()))
    finally:
        engine.dispose()
    typer.echo(f"revoked {view.prefix}")
