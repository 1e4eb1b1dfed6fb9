"""``tablehouse queries``: the query log from the command line, as GET /queries and
GET /analytics/queries/summary answer it, for every user or one."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tablehouse.cli.analytics import unavailable
from tablehouse.cli.common import fail, in_read_unit_of_work, settings_or_exit

if TYPE_CHECKING:
    from tablehouse.analytics.service import QueryFilter
    from tablehouse.config import Settings
    from tablehouse.core.events import EventReader

T = TypeVar("T")
app = typer.Typer(help="The query log: history and summary.", no_args_is_help=True)
STATUSES = ("ok", "refused", "timeout", "error")
SOURCES = ("api", "cli")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# While a server holds the embedded store, the same answers come from its API.
_THROUGH_THE_SERVER = {
    "history": "ask the server instead (GET /api/v1/queries; all_users=true for administrators)",
    "summary": "ask the server instead (GET /api/v1/analytics/queries/summary)",
}

User = Annotated[
    str | None, typer.Option("--user", help="Only this user's queries (email); default: everyone's")
]
Since = Annotated[
    str | None,
    typer.Option(help="From this moment: ISO 8601 (naive is UTC), or back from now: 30m, 2h, 7d"),
]
Until = Annotated[str | None, typer.Option(help="Before this moment (as --since); default now")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON, as the API answers, on stdout")]


def _moment(option: str, text: str | None, now: datetime) -> datetime | None:
    if text is None:
        return None
    duration = _DURATION.match(text.strip())
    if duration:
        return now - timedelta(**{_UNITS[duration[2]]: int(duration[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            f"{option} {text!r}: expected ISO 8601 (2026-01-31T12:00) or 30m, 2h, 7d"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _window(
    since: str | None, until: str | None, *, default: timedelta
) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    end = _moment("--until", until, now) or now
    start = _moment("--since", since, now) or end - default
    if start >= end:
        raise fail("--since must be before --until")
    return start, end


def _choice(option: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise fail(f"{option} {value!r}: expected {', '.join(allowed)}")
    return value


async def _user_id(settings: Settings, email: str | None) -> uuid.UUID | None:
    if email is None:
        return None
    from tablehouse.auth import service
    from tablehouse.core.database import ReadSession

    async def work(session: ReadSession) -> uuid.UUID | None:
        user = await service.user_by_email(session, email)
        return None if user is None else user.id

    found = await in_read_unit_of_work(settings, work)
    if found is None:
        raise fail(f"--user: no user with email {email}")
    return found


async def _emails(settings: Settings, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    from tablehouse.auth import service
    from tablehouse.core.database import ReadSession

    async def work(session: ReadSession) -> dict[uuid.UUID, str]:
        return await service.emails_of(session, ids)

    return await in_read_unit_of_work(settings, work)


def _read(settings: Settings, command: str, question: Callable[[EventReader], Awaitable[T]]) -> T:
    """Ask the store one question; one line and exit 1 when it cannot answer."""
    from tablehouse.analytics import service

    if not settings.analytics_enabled:
        raise fail("analytics is turned off (ANALYTICS_ENABLED=false): no query log to read")

    async def ask() -> T:
        # As the server does when it starts: the tables exist and have every column.
        async with service.prepared_store(settings) as store:
            return await question(store)

    try:
        return asyncio.run(ask())
    except service.StoreUnavailable as exc:
        raise unavailable(settings, exc, instead=_THROUGH_THE_SERVER[command]) from None


def _filter(
    settings: Settings, user: str | None, start: datetime, end: datetime, **more: Any
) -> QueryFilter:
    from tablehouse.analytics.service import QueryFilter

    return QueryFilter(asyncio.run(_user_id(settings, user)), start, end, **more)


@app.command(short_help="Logged queries, newest first.")
def history(
    user: User = None,
    status: Annotated[str | None, typer.Option(help="ok, refused, timeout or error")] = None,
    text: Annotated[
        str | None, typer.Option(help="Only queries containing this (any case)")
    ] = None,
    source: Annotated[str | None, typer.Option(help="api or cli: where it was sent from")] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many of the newest")] = 0,
    as_json: AsJson = False,
) -> None:
    """Logged queries, newest first (GET /api/v1/queries for every user, or one)."""
    from tablehouse.analytics import service

    _choice("--status", status, STATUSES)
    _choice("--source", source, SOURCES)
    settings = settings_or_exit()
    start, end = _window(since, until, default=timedelta(days=36500))
    where = _filter(settings, user, start, end, status=status, text=text, source=source)
    page = _read(
        settings,
        "history",
        lambda store: service.queries_page(store, where, limit=limit, offset=offset),
    )
    if as_json:
        sys.stdout.write(page.model_dump_json() + "\n")
        return
    items, total = page.items, page.total
    emails = asyncio.run(_emails(settings, {item.user_id for item in items}))
    table = Table(caption=f"{len(items)} of {total} quer{'y' if total == 1 else 'ies'}")
    # The figures keep their width; a narrow terminal folds the email and the SQL.
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("user", overflow="fold")
    table.add_column("source", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("query", overflow="fold")
    for item in items:
        query = item.query_text if item.error is None else f"{item.query_text}\n{item.error}"
        table.add_row(
            item.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            Text(emails.get(item.user_id, str(item.user_id))),
            item.source,
            item.status,
            f"{item.execution_time_ms:.3f}",
            str(item.rows_read),
            Text(query),  # users' SQL is data, never rich markup
        )
    Console(highlight=False).print(table)


@app.command(short_help="Counts, errors and p50/p95/p99 time per hour or day.")
def summary(
    user: User = None,
    interval: Annotated[str, typer.Option(help="hour or day: one line per")] = "hour",
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
) -> None:
    """Counts, errors, p50/p95/p99 time, rows and bytes read per interval (default: the last
    24 hours), as GET /api/v1/analytics/queries/summary."""
    from tablehouse.analytics import service

    _choice("--interval", interval, ("hour", "day"))
    settings = settings_or_exit()
    start, end = _window(since, until, default=timedelta(days=1))
    where = _filter(settings, user, start, end)
    answer = _read(
        settings,
        "summary",
        lambda store: service.summary(
            store, where, interval="hour" if interval == "hour" else "day"
        ),
    )
    buckets = answer.buckets
    if as_json:
        sys.stdout.write(answer.model_dump_json() + "\n")
        return
    counted = sum(bucket.count for bucket in buckets)
    table = Table(caption=f"{counted} queries, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    table.add_column("bucket (UTC)", no_wrap=True)
    for name in ("count", "errors", "p50 ms", "p95 ms", "p99 ms", "rows", "bytes"):
        table.add_column(name, justify="right", no_wrap=True)
    for bucket in buckets:
        times = bucket.execution_time_ms
        table.add_row(
            bucket.bucket.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            str(bucket.count),
            str(bucket.errors),
            f"{times.p50:.3f}",
            f"{times.p95:.3f}",
            f"{times.p99:.3f}",
            str(bucket.rows_read),
            str(bucket.bytes_read),
        )
    Console(highlight=False).print(table)
