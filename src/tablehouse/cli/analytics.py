"""``tablehouse analytics``: the ClickHouse side: migrations, status, spool replay."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated

import typer

from tablehouse.cli.common import fail, settings_or_exit

if TYPE_CHECKING:
    from tablehouse.analytics.store import AnalyticsStore
    from tablehouse.config import Settings

app = typer.Typer(help="The analytics store: migrate, status, replay.", no_args_is_help=True)


def _store(settings: Settings) -> AnalyticsStore:
    from tablehouse.analytics.lifecycle import store_target
    from tablehouse.analytics.store import AnalyticsStore

    try:
        return AnalyticsStore(store_target(settings))
    except ValueError as exc:
        raise fail(f"ANALYTICS_URL: {exc}", 2) from None


async def migrate_store(settings: Settings) -> list[str]:
    """Create or update the analytics tables (also run by ``tablehouse db init``)."""
    from tablehouse.analytics.lifecycle import prepare

    store = _store(settings)
    try:
        return await prepare(store, settings)
    finally:
        await store.close()


def unavailable(settings: Settings, exc: Exception, *, instead: str) -> typer.Exit:
    """One line: why the store cannot be used, and, if a process holds it, what to do."""
    from tablehouse.analytics.store import StoreLocked

    if isinstance(exc, StoreLocked):
        holder = f"process {exc.pid}" if exc.pid else "another process"
        return fail(
            f"the embedded analytics store {exc.path} is open in {holder} (a running "
            f"tablehouse serve?), and chDB admits one process at a time: {instead}, or stop "
            "that process and run this again"
        )
    return fail(f"the analytics store did not answer ({_store(settings).target.describe()}): {exc}")


# What to do instead while a server holds the embedded store, per command.
_THROUGH_THE_SERVER = {
    "migrate": "the server migrates the tables itself when it starts",
    "status": "ask the server (GET /health/ready as an administrator shows its analytics)",
    "replay": "the server replays the spool itself",
}


@app.command("migrate", short_help="Create or update the ClickHouse tables and TTLs.")
def migrate() -> None:
    """Create or update the ClickHouse tables and their TTLs; safe to repeat."""
    from tablehouse.analytics.store import StoreUnavailable

    settings = settings_or_exit()
    try:
        applied = asyncio.run(migrate_store(settings))
    except StoreUnavailable as exc:
        raise unavailable(settings, exc, instead=_THROUGH_THE_SERVER["migrate"]) from None
    typer.echo(f"applied: {', '.join(applied)}" if applied else "analytics tables up to date")


@app.command("status")
def status() -> None:
    """Migrations applied, and events waiting in the spool or set aside."""
    from tablehouse.analytics import schema
    from tablehouse.analytics.store import StoreUnavailable

    settings = settings_or_exit()

    async def work() -> list[tuple[int, str, object]]:
        store = _store(settings)
        try:
            await store.connect()
            return [(v, n, at) for v, n, at in await schema.status(store)]
        finally:
            await store.close()

    try:
        migrations = asyncio.run(work())
    except StoreUnavailable as exc:
        raise unavailable(settings, exc, instead=_THROUGH_THE_SERVER["status"]) from None
    typer.echo(f"store: {_store(settings).target.describe()}")
    for version, name, applied_at in migrations:
        typer.echo(f"  {version:04d} {name}: {applied_at or 'pending'}")
    spool = settings.resolved_spool_dir
    segments = sorted(spool.glob("slot-*/spool-*.ndjson"))
    letters = sorted(spool.glob("slot-*/dead_letter.ndjson"))
    dead = sum(sum(1 for _ in path.open("rb")) for path in letters)
    typer.echo(f"spool: {spool} ({len(segments)} segment file(s) waiting, {dead} dead-lettered)")


@app.command("replay", short_help="Write what waits in the spool now.")
def replay(
    within: Annotated[float, typer.Option(help="Give up after this many seconds")] = 300.0,
) -> None:
    """Write what waits in the spool now (a running server does this by itself)."""
    from tablehouse.analytics.store import StoreUnavailable

    settings = settings_or_exit()
    try:
        written, left = asyncio.run(_replay(settings, within))
    except StoreUnavailable as exc:
        raise unavailable(settings, exc, instead=_THROUGH_THE_SERVER["replay"]) from None
    typer.echo(f"replayed {written} event(s); {left} still waiting")
    if left:
        raise typer.Exit(1)


async def _replay(settings: Settings, within: float) -> tuple[int, int]:
    from tablehouse.analytics.lifecycle import prepare
    from tablehouse.analytics.writer import EventWriter, WriterSettings

    store = _store(settings)
    await prepare(store, settings)
    writers = []
    try:
        # One writer per slot that holds batches: each claims the lowest free slot.
        for _ in settings.resolved_spool_dir.glob("slot-*"):
            writer = EventWriter(store, WriterSettings(spool_dir=settings.resolved_spool_dir))
            await writer.start()
            writers.append(writer)
        deadline = time.monotonic() + within
        # Polled: the writer reports counts, it has no event to wait on.
        while time.monotonic() < deadline and any(w.counts().spooled for w in writers):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    finally:
        for writer in writers:
            await writer.stop()
        await store.close()
    counts = [writer.counts() for writer in writers]
    return sum(c.written for c in counts), sum(c.spooled for c in counts)
