"""The analytics domain's operations: the query log and metrics read back (for the API and
``tablehouse queries``), and the store's upkeep (for ``tablehouse analytics``, ``db init``
and ``tablehouse query``). The router and the CLI call this module; it calls the
repository for every read and the ``store`` and ``pipeline`` machinery for the rest."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from tablehouse.analytics import repository
from tablehouse.analytics.pipeline import handoff
from tablehouse.analytics.pipeline.handoff import HandOff as HandOff
from tablehouse.analytics.pipeline.lifecycle import prepare, store_target
from tablehouse.analytics.pipeline.writer import EventWriter, WriterSettings
from tablehouse.analytics.repository import QueryFilter as QueryFilter
from tablehouse.analytics.schemas import (
    Aggregation,
    Interval,
    LoggedQuery,
    MetricPoint,
    MetricSeries,
    QuerySummary,
    SummaryBucket,
    Times,
    UserSummary,
)
from tablehouse.analytics.store import migrations
from tablehouse.analytics.store.client import AnalyticsStore
from tablehouse.analytics.store.client import StoreLocked as StoreLocked
from tablehouse.analytics.store.client import StoreUnavailable as StoreUnavailable
from tablehouse.api.pagination import Page
from tablehouse.auth.principal import Principal
from tablehouse.config import Settings
from tablehouse.core.events import Event, EventPipeline, EventReader
from tablehouse.errors import Forbidden, InvalidInput, NotFound, ServiceUnavailable

T = TypeVar("T")
MAX_BUCKETS = 10_000
# The range of ClickHouse's DateTime64, which the log's timestamps are. No query is logged
# outside it, so a bound beyond it means the same as the range's end (and ClickHouse
# refuses a parameter before its start).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 12, 31, tzinfo=UTC)


# --- the API's questions --------------------------------------------------------------------


def store_of(analytics: EventPipeline | None) -> EventReader:
    """The store to read from; 404 analytics_disabled when ANALYTICS_ENABLED=false."""
    if analytics is None:
        raise NotFound(
            "analytics is turned off on this server (ANALYTICS_ENABLED=false)",
            code="analytics_disabled",
        )
    return analytics.store


async def answered(question: Awaitable[T]) -> T:
    """The answer, or 503 analytics_unavailable while the store is away."""
    try:
        return await question
    except StoreUnavailable:
        raise ServiceUnavailable(
            "the analytics store is not answering; retry shortly", code="analytics_unavailable"
        ) from None


def window(
    since: datetime | None, until: datetime | None, *, default: timedelta
) -> tuple[datetime, datetime]:
    """[since, until) in UTC: until defaults to now, since to ``default`` before it."""
    end = _utc(until) if until is not None else datetime.now(UTC)
    if since is not None and _utc(since) >= end:
        raise InvalidInput("'from' must be before 'to'", loc=("query", "from"))
    end = _within_log(end)
    start = _within_log(_utc(since)) if since is not None else max(end - default, EARLIEST)
    return start, end


def check_buckets(start: datetime, end: datetime, step: timedelta) -> None:
    if (end - start) / step > MAX_BUCKETS:
        raise InvalidInput(
            f"at most {MAX_BUCKETS} buckets: shorten the range or widen the step",
            loc=("query", "from"),
        )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _within_log(moment: datetime) -> datetime:
    return min(max(moment, EARLIEST), LATEST)


def callers_queries(
    caller: Principal, every_user: bool, start: datetime, end: datetime, **more: Any
) -> QueryFilter:
    """The caller's queries in [start, end), or every user's for an administrator."""
    return QueryFilter(
        _whose(caller, every_user), start, end, api_key_id=_sent_with(caller), **more
    )


def _whose(caller: Principal, every_user: bool) -> uuid.UUID | None:
    if not every_user:
        return caller.user.id
    if not caller.is_admin or caller.session_id is None:
        raise Forbidden("only administrators may read every user's queries", code="admin_required")
    return None


def _sent_with(caller: Principal) -> uuid.UUID | None:
    """The key whose queries alone a dataset-restricted key may see (None: no such limit).

    Its owner's other queries may name datasets the key cannot touch, and what a query
    read is not known for every query (one refused before parsing may name anything), so
    such a key sees only what it sent itself (docs/api.md, "Query history")."""
    return caller.api_key_id if caller.datasets is not None else None


async def queries_page(
    store: EventReader, where: QueryFilter, *, limit: int, offset: int
) -> Page[LoggedQuery]:
    rows, total = await repository.page(store, where, limit=limit, offset=offset)
    items = [LoggedQuery.model_validate(row) for row in rows]
    return Page[LoggedQuery](items=items, total=total, limit=limit, offset=offset)


async def callers_query(store: EventReader, query_id: uuid.UUID, caller: Principal) -> LoggedQuery:
    """One of the caller's queries (an administrator's session: anyone's), or 404."""
    owner = None if caller.is_admin and caller.session_id is not None else caller.user.id
    row = await repository.one(store, query_id, user_id=owner, api_key_id=_sent_with(caller))
    if row is None:
        raise NotFound(f"no query {query_id} in your history", code="query_not_found")
    return LoggedQuery.model_validate(row)


async def summary(store: EventReader, where: QueryFilter, *, interval: Interval) -> QuerySummary:
    rows = await repository.summary(store, where, interval=interval)
    return QuerySummary(
        interval=interval,
        since=where.since,
        until=where.until,
        buckets=[SummaryBucket.model_validate(_with_times(row)) for row in rows],
    )


async def slowest(store: EventReader, where: QueryFilter, *, limit: int) -> list[LoggedQuery]:
    rows = await repository.slowest(store, where, limit=limit)
    return [LoggedQuery.model_validate(row) for row in rows]


async def by_user(store: EventReader, where: QueryFilter, *, limit: int) -> list[UserSummary]:
    rows = await repository.by_user(store, where, limit=limit)
    return [UserSummary.model_validate(_with_times(row)) for row in rows]


async def metric_series(
    store: EventReader,
    *,
    name: str,
    since: datetime,
    until: datetime,
    step_seconds: int,
    aggregation: Aggregation,
) -> MetricSeries:
    rows = await repository.metric_series(
        store,
        name=name,
        since=since,
        until=until,
        step_seconds=step_seconds,
        aggregation=aggregation,
    )
    return MetricSeries(
        name=name,
        aggregation=aggregation,
        step_seconds=step_seconds,
        points=[MetricPoint.model_validate(row) for row in rows],
    )


def _with_times(row: dict[str, Any]) -> dict[str, Any]:
    """ClickHouse's quantiles() array as the p50/p95/p99 object."""
    times = row.pop("times")
    return {**row, "execution_time_ms": Times.of(times)}


# --- the store's upkeep, for commands -------------------------------------------------------


def store_for(settings: Settings) -> AnalyticsStore:
    """A store for ANALYTICS_URL, not connected yet (ValueError: the URL is not usable)."""
    return AnalyticsStore(store_target(settings))


def describe_store(settings: Settings) -> str:
    """Where the store is, its password hidden."""
    return store_target(settings).describe()


@asynccontextmanager
async def prepared_store(settings: Settings) -> AsyncIterator[EventReader]:
    """The store, connected, as the server leaves it when it starts: the tables exist and
    have every column (StoreUnavailable, or StoreLocked, when it cannot be opened)."""
    store = store_for(settings)
    try:
        await prepare(store, settings)
        yield store
    finally:
        await store.close()


async def migrate(settings: Settings) -> list[str]:
    """Create or update the analytics tables and their TTLs: the migrations applied."""
    store = store_for(settings)
    try:
        return await prepare(store, settings)
    finally:
        await store.close()


async def migration_status(settings: Settings) -> list[tuple[int, str, datetime | None]]:
    """Each migration shipped: version, name, when it was applied (None: pending)."""
    store = store_for(settings)
    try:
        await store.connect()
        return await migrations.status(store)
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class SpoolState:
    segments: int  # segment files waiting for the store
    dead_lettered: int  # events the store refused, set aside


def spool_state(settings: Settings) -> SpoolState:
    spool = settings.resolved_spool_dir
    segments = sorted(spool.glob("slot-*/spool-*.ndjson"))
    letters = sorted(spool.glob("slot-*/dead_letter.ndjson"))
    dead = 0
    for path in letters:
        with path.open("rb") as lines:
            dead += sum(1 for _ in lines)
    return SpoolState(len(segments), dead)


async def replay(settings: Settings, within: float) -> tuple[int, int]:
    """Write what waits in the spool, for at most ``within`` seconds: the events written and
    those still waiting."""
    store = store_for(settings)
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


async def hand_off(settings: Settings, events: Sequence[Event]) -> HandOff:
    """A command's events into the store, or the spool for the server holding it."""
    return await handoff.hand_off(settings, events)
