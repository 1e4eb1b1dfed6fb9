"""``tablehouse analytics``: the ClickHouse side: migrations, status, spool replay."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from tablehouse.cli.common import fail, settings_or_exit

if TYPE_CHECKING:
    from tablehouse.config import Settings

app = typer.Typer(help="The analytics store: migrate, status, replay.", no_args_is_help=True)


def _store_address(settings: Settings) -> str:
    from tablehouse.analytics import service

    try:
        return service.describe_store(settings)
    except ValueError as exc:
        raise fail(f"ANALYTICS_URL: {exc}", 2) from None


async def migrate_store(settings: Settings) -> list[str]:
    """Create or update the analytics tables (also run by ``tablehouse db init``)."""
    from tablehouse.analytics import service

    _store_address(settings)  # a bad ANALYTICS_URL: exit 2 before anything is tried
    return await service.migrate(settings)


def unavailable(settings: Settings, exc: Exception, *, instead: str) -> typer.Exit:
    """One line: why the store cannot be used, and, if a process holds it, what to do."""
    from tablehouse.analytics.service import StoreLocked

    if isinstance(exc, StoreLocked):
        holder = f"process {exc.pid}" if exc.pid else "another process"
        return fail(
            f"the embedded analytics store {exc.path} is open in {holder} (a running "
            f"tablehouse serve?), and chDB admits one process at a time: {instead}, or stop "
            "that process and run this again"
        )
    return fail(f"the analytics store did not answer ({_store_address(settings)}): {exc}")


# What to do instead while a server holds the embedded store, per command.
_THROUGH_THE_SERVER = {
    "migrate": "the server migrates the tables itself when it starts",
    "status": "ask the server (GET /health/ready as an administrator shows its analytics)",
    "replay": "the server replays the spool itself",
}


@app.command("migrate", short_help="Create or update the ClickHouse tables and TTLs.")
def migrate() -> None:
    """Create or update the ClickHouse tables and their TTLs; safe to repeat."""
    from tablehouse.analytics.service import StoreUnavailable

    settings = settings_or_exit()
    try:
        applied = asyncio.run(migrate_store(settings))
    except StoreUnavailable as exc:
        raise unavailable(settings, exc, instead=_THROUGH_THE_SERVER["migrate"]) from None
    typer.echo(f"applied: {', '.join(applied)}" if applied else "analytics tables up to date")


@app.command("status")
def status() -> None:
    """Migrations applied, and events waiting in the spool or set aside."""
    from tablehouse.analytics import service

    settings = settings_or_exit()
    address = _store_address(settings)
    try:
        migrations = asyncio.run(service.migration_status(settings))
    except service.StoreUnavailable as exc:
        raise unavailable(settings, exc, instead=_THROUGH_THE_SERVER["status"]) from None
    typer.echo(f"store: {address}")
    for version, name, applied_at in migrations:
        typer.echo(f"  {version:04d} {name}: {applied_at or 'pending'}")
    spool = service.spool_state(settings)
    typer.echo(
        f"spool: {settings.resolved_spool_dir} ({spool.segments} segment file(s) waiting, "
        f"{spool.dead_lettered} dead-lettered)"
    )


@app.command("replay", short_help="Write what waits in the spool now.")
def replay(
    within: Annotated[float, typer.Option(help="Give up after this many seconds")] = 300.0,
) -> None:
    """Write what waits in the spool now (a running server does this by itself)."""
    from tablehouse.analytics import service

    settings = settings_or_exit()
    _store_address(settings)
    try:
        written, left = asyncio.run(service.replay(settings, within))
    except service.StoreUnavailable as exc:
        raise unavailable(settings, exc, instead=_THROUGH_THE_SERVER["replay"]) from None
    typer.echo(f"replayed {written} event(s); {left} still waiting")
    if left:
        raise typer.Exit(1)
