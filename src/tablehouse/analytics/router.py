"""The query history (/queries) and analytics (/analytics) endpoints."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from tablehouse.analytics import service
from tablehouse.analytics.dependencies import EveryUser, Since, Store, Until
from tablehouse.analytics.schemas import (
    Aggregation,
    Interval,
    LoggedQuery,
    MetricSeries,
    QuerySummary,
    Source,
    UserSummary,
)
from tablehouse.api.pagination import Limit, Offset, Page
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, errors
from tablehouse.auth.dependencies import CurrentAdmin, QueryAccess

# 404 analytics_disabled when ANALYTICS_ENABLED=false; 503 also when the store is away.
router = APIRouter(
    prefix=API_PREFIX, tags=["analytics"], responses={**AUTHENTICATED, **errors(404)}
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
        Source | None, Query(description="Where it was sent from: api or cli")
    ] = None,
    every_user: EveryUser = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[LoggedQuery]:
    start, end = service.window(since, until, default=timedelta(days=36500))
    where = service.callers_queries(
        caller, every_user, start, end, status=status, text=q, source=source
    )
    return await service.answered(service.queries_page(store, where, limit=limit, offset=offset))


@router.get("/queries/{query_id}", summary="One of your queries (administrators: anyone's)")
async def read_query(query_id: uuid.UUID, caller: QueryAccess, store: Store) -> LoggedQuery:
    return await service.answered(service.callers_query(store, query_id, caller))


@router.get("/analytics/queries/summary", summary="Counts, errors, times and volume per interval")
async def query_summary(
    caller: QueryAccess,
    store: Store,
    interval: Annotated[Interval, Query()] = "hour",
    since: Since = None,
    until: Until = None,
    every_user: EveryUser = False,
) -> QuerySummary:
    start, end = service.window(since, until, default=timedelta(days=1))
    step = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
    service.check_buckets(start, end, step)
    where = service.callers_queries(caller, every_user, start, end)
    return await service.answered(service.summary(store, where, interval=interval))


@router.get("/analytics/queries/slowest", summary="The slowest queries of every user (admins)")
async def slowest_queries(
    _admin: CurrentAdmin,
    store: Store,
    since: Since = None,
    until: Until = None,
    limit: Limit = 20,
) -> list[LoggedQuery]:
    start, end = service.window(since, until, default=timedelta(days=1))
    where = service.QueryFilter(None, start, end)
    return await service.answered(service.slowest(store, where, limit=limit))


@router.get("/analytics/queries/by-user", summary="Query counts and times per user (admins)")
async def queries_by_user(
    _admin: CurrentAdmin,
    store: Store,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
) -> list[UserSummary]:
    start, end = service.window(since, until, default=timedelta(days=1))
    where = service.QueryFilter(None, start, end)
    return await service.answered(service.by_user(store, where, limit=limit))


@router.get("/analytics/metrics", summary="One metric over time (admins)")
async def metric(
    _admin: CurrentAdmin,
    store: Store,
    name: Annotated[str, Query(min_length=1, max_length=200)],
    since: Since = None,
    until: Until = None,
    step: Annotated[int, Query(ge=1, le=86_400 * 31, description="Bucket width, seconds")] = 60,
    aggregation: Annotated[Aggregation, Query()] = "avg",
) -> MetricSeries:
    start, end = service.window(since, until, default=timedelta(hours=1))
    service.check_buckets(start, end, timedelta(seconds=step))
    return await service.answered(
        service.metric_series(
            store, name=name, since=start, until=end, step_seconds=step, aggregation=aggregation
        )
    )
