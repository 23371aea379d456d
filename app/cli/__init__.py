"""`twofold`: the service and the jobs around it, from one command.

`twofold serve` (also `python -m app` and `make run`) starts what DATABASE_URL/REDIS_URL
do not name, migrates and serves; `twofold migrate` only migrates; `twofold verify`
re-checks tenants' ledgers straight from the database; `twofold export` / `import`
move a tenant's transactions out and in (`data.py`); `twofold keys` makes key pairs,
signs requests and checks proofs (`keys.py`); `twofold tenants new` (`tenants.py`) and
`twofold events tail` (`events.py`). What the commands that call the API share is in
`api.py`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.data import export, import_
from app.cli.events import events
from app.cli.keys import keys
from app.cli.tenants import tenants
from app.embedded import database_for_tools, migrate, stop_all
from app.instance import AlreadyRunning
from app.settings import environment

cli = typer.Typer(
    name="twofold",
    help="A double-entry ledger service: serve it, migrate it, verify it, move data in and out.",
    no_args_is_help=False,
    add_completion=False,
)
cli.add_typer(keys, name="keys")
cli.add_typer(tenants, name="tenants")
cli.add_typer(events, name="events")
cli.command()(export)
cli.command("import")(import_)
console = Console(stderr=True)


@cli.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        raise typer.Exit(_serve())


def _serve() -> int:
    from app.server import serve

    return serve()


@cli.command()
def serve() -> None:
    """Serve the API (embedded PostgreSQL/Valkey where DATABASE_URL/REDIS_URL are unset).

    Migrates first; serves on HOST:PORT with WORKERS processes."""
    raise typer.Exit(_serve())


@cli.command("migrate")
def migrate_command() -> None:
    """Migrate DATABASE_URL to the newest schema."""
    migrate(environment()["DATABASE_URL"])


@cli.command()
def verify(
    tenant: Annotated[
        list[str] | None, typer.Option("--tenant", "-t", help="a tenant's name (default: all)")
    ] = None,
) -> None:
    """Re-check ledgers from their stored rows; exit 1 on a problem."""
    url, stops = database_for_tools(environment())
    try:
        reports = asyncio.run(_verify(url, tenant or []))
    finally:
        stop_all(stops)
    table = Table("tenant", "ok", "events", "transactions", "entries", "accounts", "head")
    for name, report in reports.items():
        checked = report["checked"]
        table.add_row(
            name, "yes" if report["ok"] else "[red]NO[/red]",
            *(str(checked[k]) for k in ("events", "transactions", "entries", "accounts")),
            f"{report['head']['sequence']} {report['head']['hash'][:12]}…",
        )  # fmt: skip
    Console().print(table)
    bad = {name: r for name, r in reports.items() if not r["ok"]}
    for name, report in bad.items():
        for problem in report["problems"]:
            console.print(f"{name}: {problem['kind']} at {problem['where']}: {problem['detail']}")
    raise typer.Exit(1 if bad else 0)


async def _verify(url: str, tenants: list[str]) -> dict[str, Any]:
    import asyncpg

    from app.models import audit

    connection = await asyncpg.connect(url)
    reports: dict[str, Any] = {}
    try:
        names = tenants or await audit.tenants(connection)
        columns = (
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.completed} rows"), TimeElapsedColumn(),
        )  # fmt: skip
        with Progress(*columns, console=console, transient=True) as progress:
            for name in names:
                task = progress.add_task(f"{name}", total=None)

                def advance(table: str, rows: int, task: Any = task, name: str = name) -> None:
                    progress.update(task, advance=rows, description=f"{name}: {table}")

                reports[name] = await audit.verify(connection, name, advance)
                progress.remove_task(task)
    finally:
        await connection.close()
    return reports


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="twofold: %(message)s")
    try:
        cli()
    except AlreadyRunning as exc:
        console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
