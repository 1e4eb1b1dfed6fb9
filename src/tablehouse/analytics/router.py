"""The query history (/queries) and analytics (/analytics) endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request

from tablehouse.analytics import history
from tablehouse.analytics.schemas import (
    LoggedQuery,
    MetricPoint,
    MetricSeries,
    QuerySummary,
    SummaryBucket,
    Times,
    UserSummary,
)
from tablehouse.analytics.store import AnalyticsStore, StoreUnavailable
from tablehouse.api.pagination import Limit, Offset, Page
from tablehouse.api.params import IsoDateTime
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, errors
from tablehouse.auth.dependencies import CurrentAdmin, QueryAccess
from tablehouse.auth.principal import Principal
from tablehouse.errors import Forbidden, InvalidInput, NotFound, ServiceUnavailable

# 404 analytics_disabled when ANALYTICS_ENABLED=false; 503 also when the store is away.
router = APIRouter(
    prefix=API_PREFIX, tags=["analytics"], responses={**AUTHENTICATED, **errors(404)}
)
T = TypeVar("T")
MAX_BUCKETS = 10_000

Since = Annotated[
    IsoDateTime | None,
    Query(alias="from", description="Start, inclusive (ISO 8601; naive is UTC)"),
]
Until = Annotated[
    IsoDateTime | None, Query(alias="to", description="End, exclusive (ISO 8601; default now)")
]
EveryUser = Annotated[
    bool, Query(alias="all_users", description="Every user's queries (administrators only)")
]


async def get_store(request: Request) -> AnalyticsStore:
    store = getattr(request.app.state, "analytics_store", None)
    if store is None:
        raise NotFound(
            "analytics is turned off on this server (ANALYTICS_ENABLED=false)",
            code="analytics_disabled",
        )
    assert isinstance(store, AnalyticsStore)
    return store


Store = Annotated[AnalyticsStore, Depends(get_store)]


async def _answer(question: Awaitable[T]) -> T:
    try:
        return await question
    except StoreUnavailable:
        raise ServiceUnavailable(
            "the analytics store is not answering; retry shortly", code="analytics_unavailable"
        ) from None


# The range of ClickHouse's DateTime64, which the log's timestamps are. No query is logged
# outside it, so a bound beyond it means the same as the range's end (and ClickHouse
# refuses a parameter before its start).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 12, 31, tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _within_log(moment: datetime) -> datetime:
    return min(max(moment, EARLIEST), LATEST)


def _window(
    since: datetime | None, until: datetime | None, *, default: timedelta
) -> tuple[datetime, datetime]:
    end = _utc(until) if until is not None else datetime.now(UTC)
    if since is not None and _utc(since) >= end:
        raise InvalidInput("'from' must be before 'to'", loc=("query", "from"))
    end = _within_log(end)
    start = _within_log(_utc(since)) if since is not None else max(end - default, EARLIEST)
    return start, end


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


def _filter(
    caller: Principal, every_user: bool, start: datetime, end: datetime, **more: Any
) -> history.QueryFilter:
    return history.QueryFilter(
        _whose(caller, every_user), start, end, api_key_id=_sent_with(caller), **more
    )


@router.get("/queries", summary="Your query history, newest first")
async def list_queries(
    caller: QueryAccess,
    store: Store,
    since: Since = None,
    until: Until = None,
    status: Annotated[str | None, Query(description="ok, refused, timeout or error")] = None,
    q: Annotated[str | None, Query(max_length=1000, description="Text the query contains")] = None,
    source: Annotated[
        history.Source | None, Query(description="Where it was sent from: api or cli")
    ] = None,
    every_user: EveryUser = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[LoggedQuery]:
    start, end = _window(since, until, default=timedelta(days=36500))
    where = _filter(caller, every_user, start, end, status=status, text=q, source=source)
    rows, total = await _answer(history.page(store, where, limit=limit, offset=offset))
    items = [LoggedQuery.model_validate(row) for row in rows]
    return Page[LoggedQuery](items=items, total=total, limit=limit, offset=offset)


@router.get("/queries/{query_id}", summary="One of your queries (administrators: anyone's)")
async def read_query(query_id: uuid.UUID, caller: QueryAccess, store: Store) -> LoggedQuery:
    owner = None if caller.is_admin and caller.session_id is not None else caller.user.id
    row = await _answer(history.one(store, query_id, user_id=owner, api_key_id=_sent_with(caller)))
    if row is None:
        raise NotFound(f"no query {query_id} in your history", code="query_not_found")
    return LoggedQuery.model_validate(row)


@router.get("/analytics/queries/summary", summary="Counts, errors, times and volume per interval")
async def query_summary(
    caller: QueryAccess,
    store: Store,
    interval: Annotated[history.Interval, Query()] = "hour",
    since: Since = None,
    until: Until = None,
    every_user: EveryUser = False,
) -> QuerySummary:
    start, end = _window(since, until, default=timedelta(days=1))
    step = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
    _check_buckets(start, end, step)
    where = _filter(caller, every_user, start, end)
    rows = await _answer(history.summary(store, where, interval=interval))
    return QuerySummary(
        interval=interval,
        since=start,
        until=end,
        buckets=[SummaryBucket.model_validate(_with_times(row)) for row in rows],
    )


@router.get("/analytics/queries/slowest", summary="The slowest queries of every user (admins)")
async def slowest_queries(
    _admin: CurrentAdmin,
    store: Store,
    since: Since = None,
    until: Until = None,
    limit: Limit = 20,
) -> list[LoggedQuery]:
    start, end = _window(since, until, default=timedelta(days=1))
    rows = await _answer(history.slowest(store, history.QueryFilter(None, start, end), limit=limit))
    return [LoggedQuery.model_validate(row) for row in rows]


@router.get("/analytics/queries/by-user", summary="Query counts and times per user (admins)")
async def queries_by_user(
    _admin: CurrentAdmin,
    store: Store,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
) -> list[UserSummary]:
    start, end = _window(since, until, default=timedelta(days=1))
    rows = await _answer(history.by_user(store, history.QueryFilter(None, start, end), limit=limit))
    return [UserSummary.model_validate(_with_times(row)) for row in rows]


@router.get("/analytics/metrics", summary="One metric over time (admins)")
async def metric(
    _admin: CurrentAdmin,
    store: Store,
    name: Annotated[str, Query(min_length=1, max_length=200)],
    since: Since = None,
    until: Until = None,
    step: Annotated[int, Query(ge=1, le=86_400 * 31, description="Bucket width, seconds")] = 60,
    aggregation: Annotated[history.Aggregation, Query()] = "avg",
) -> MetricSeries:
    start, end = _window(since, until, default=timedelta(hours=1))
    _check_buckets(start, end, timedelta(seconds=step))
    rows = await _answer(
        history.metric_series(
            store, name=name, since=start, until=end, step_seconds=step, aggregation=aggregation
        )
    )
    return MetricSeries(
        name=name,
        aggregation=aggregation,
        step_seconds=step,
        points=[MetricPoint.model_validate(row) for row in rows],
    )


def _check_buckets(start: datetime, end: datetime, step: timedelta) -> None:
    if (end - start) / step > MAX_BUCKETS:
        raise InvalidInput(
            f"at most {MAX_BUCKETS} buckets: shorten the range or widen the step",
            loc=("query", "from"),
        )


def _with_times(row: dict[str, Any]) -> dict[str, Any]:
    """ClickHouse's quantiles() array as the p50/p95/p99 object."""
    times = row.pop("times")
    return {**row, "execution_time_ms": Times.of(times)}
