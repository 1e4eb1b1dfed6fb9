"""Every ClickHouse statement the analytics reads make: the query log and the metrics, one
statement per question (the writes are the pipeline's, the tables the store's migrations).

Every value reaches ClickHouse as a server-side parameter (``{name:Type}``); the only words
formatted into the SQL come from fixed choices (the bucket unit, the aggregate function).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tablehouse.analytics.schemas import Aggregation, Interval, Source
from tablehouse.core.events import EventReader

QUERY_LOG_COLUMNS = (
    "query_id, user_id, query_text, status, error, execution_time_us, rows_read, bytes_read, "
    "timestamp, source"
)
# Percentiles in microseconds (rows logged before analytics migration 0004 read as their
# whole milliseconds times 1000); ``_in_ms`` turns them into milliseconds.
_TIMES = "quantiles(0.5, 0.95, 0.99)(execution_time_us) AS times"
_AGGREGATES: dict[Aggregation, str] = {
    "avg": "avg(value)",
    "sum": "sum(value)",
    "min": "min(value)",
    "max": "max(value)",
    "count": "toFloat64(count())",
    "p50": "quantile(0.5)(value)",
    "p95": "quantile(0.95)(value)",
    "p99": "quantile(0.99)(value)",
}


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """Which log rows: ``user_id`` None means every user's (administrators only);
    ``api_key_id`` keeps only the queries sent with that key."""

    user_id: uuid.UUID | None
    since: datetime
    until: datetime
    status: str | None = None
    text: str | None = None
    api_key_id: uuid.UUID | None = None
    source: Source | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses = [
            "timestamp >= {since:DateTime64(3, 'UTC')}",
            "timestamp < {until:DateTime64(3, 'UTC')}",
        ]
        parameters: dict[str, Any] = {"since": self.since, "until": self.until}
        if self.user_id is not None:
            clauses.append("user_id = {user_id:UUID}")
            parameters["user_id"] = self.user_id
        if self.api_key_id is not None:
            clauses.append("api_key_id = {api_key_id:UUID}")
            parameters["api_key_id"] = self.api_key_id
        if self.status is not None:
            clauses.append("status = {status:String}")
            parameters["status"] = self.status
        if self.source is not None:
            clauses.append("source = {source:String}")
            parameters["source"] = self.source
        if self.text:
            clauses.append("positionCaseInsensitiveUTF8(query_text, {text:String}) > 0")
            parameters["text"] = self.text
        return " AND ".join(clauses), parameters


async def page(
    store: EventReader, where: QueryFilter, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    condition, parameters = where.where()
    rows = await store.query(
        f"SELECT {QUERY_LOG_COLUMNS} FROM query_logs WHERE {condition} "
        "ORDER BY timestamp DESC, query_id LIMIT {limit:UInt32} OFFSET {offset:UInt32}",
        {**parameters, "limit": limit, "offset": offset},
    )
    counted = await store.query(
        f"SELECT count() AS total FROM query_logs WHERE {condition}", parameters
    )
    return [_logged(row) for row in rows], int(counted[0]["total"])


async def one(
    store: EventReader,
    query_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None,
    api_key_id: uuid.UUID | None = None,
) -> dict[str, Any] | None:
    """One logged query; ``user_id`` limits it to that user's (None: anyone's), and
    ``api_key_id`` to those sent with that key."""
    mine = "" if user_id is None else " AND user_id = {user_id:UUID}"
    if api_key_id is not None:
        mine += " AND api_key_id = {api_key_id:UUID}"
    rows = await store.query(
        f"SELECT {QUERY_LOG_COLUMNS} FROM query_logs WHERE query_id = {{query_id:UUID}}{mine} "
        "LIMIT 1",
        {"query_id": query_id, "user_id": user_id, "api_key_id": api_key_id},
    )
    return _logged(rows[0]) if rows else None


async def summary(
    store: EventReader, where: QueryFilter, *, interval: Interval
) -> list[dict[str, Any]]:
    """Per bucket: count, errors (any status but ok), p50/p95/p99 time, rows and bytes read."""
    condition, parameters = where.where()
    unit = {"hour": "HOUR", "day": "DAY"}[interval]
    rows = await store.query(
        f"SELECT toStartOfInterval(timestamp, INTERVAL 1 {unit}, 'UTC') AS bucket, "
        "count() AS count, countIf(status != 'ok') AS errors, "
        f"{_TIMES}, sum(rows_read) AS rows_read, sum(bytes_read) AS bytes_read "
        f"FROM query_logs WHERE {condition} GROUP BY bucket ORDER BY bucket",
        parameters,
    )
    return [_in_ms(row) for row in rows]


async def slowest(store: EventReader, where: QueryFilter, *, limit: int) -> list[dict[str, Any]]:
    condition, parameters = where.where()
    rows = await store.query(
        f"SELECT {QUERY_LOG_COLUMNS} FROM query_logs WHERE {condition} "
        "ORDER BY execution_time_us DESC, timestamp DESC LIMIT {limit:UInt32}",
        {**parameters, "limit": limit},
    )
    return [_logged(row) for row in rows]


async def by_user(store: EventReader, where: QueryFilter, *, limit: int) -> list[dict[str, Any]]:
    condition, parameters = where.where()
    rows = await store.query(
        "SELECT user_id, count() AS count, countIf(status != 'ok') AS errors, "
        f"{_TIMES}, sum(rows_read) AS rows_read, sum(bytes_read) AS bytes_read "
        f"FROM query_logs WHERE {condition} GROUP BY user_id "
        "ORDER BY count DESC, user_id LIMIT {limit:UInt32}",
        {**parameters, "limit": limit},
    )
    return [_in_ms(row) for row in rows]


def _logged(row: dict[str, Any]) -> dict[str, Any]:
    """A log row with its time in milliseconds, to the microsecond."""
    row["execution_time_ms"] = row.pop("execution_time_us") / 1000
    return row


def _in_ms(row: dict[str, Any]) -> dict[str, Any]:
    row["times"] = [value / 1000 for value in row["times"]]
    return row


async def metric_series(
    store: EventReader,
    *,
    name: str,
    since: datetime,
    until: datetime,
    step_seconds: int,
    aggregation: Aggregation,
) -> list[dict[str, Any]]:
    return await store.query(
        "SELECT toStartOfInterval(timestamp, toIntervalSecond({step:UInt32}), 'UTC') AS bucket, "
        f"{_AGGREGATES[aggregation]} AS value, count() AS samples FROM metrics "
        "WHERE metric_name = {name:String} AND timestamp >= {since:DateTime64(3, 'UTC')} "
        "AND timestamp < {until:DateTime64(3, 'UTC')} GROUP BY bucket ORDER BY bucket",
        {"name": name, "since": since, "until": until, "step": step_seconds},
    )
