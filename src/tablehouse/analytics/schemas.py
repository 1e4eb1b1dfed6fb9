"""Bodies of the query history and analytics endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

Interval = Literal["hour", "day"]
Aggregation = Literal["avg", "sum", "min", "max", "count", "p50", "p95", "p99"]
Source = Literal["api", "cli"]


class LoggedQuery(BaseModel):
    query_id: uuid.UUID
    user_id: uuid.UUID
    query_text: str
    status: str = Field(description="ok, refused, timeout or error")
    error: str | None
    execution_time_ms: float = Field(
        description="Milliseconds, to the microsecond (whole milliseconds for queries logged "
        "before analytics migration 0004)"
    )
    rows_read: int
    bytes_read: int
    timestamp: datetime
    source: str = Field(description="Where it was sent from: api or cli")

    @field_validator("error", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None


class Times(BaseModel):
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, quantiles: list[float]) -> Times:
        p50, p95, p99 = (round(float(value), 3) for value in quantiles)
        return cls(p50=p50, p95=p95, p99=p99)


class SummaryBucket(BaseModel):
    bucket: datetime
    count: int
    errors: int = Field(description="Queries whose status is not ok")
    execution_time_ms: Times
    rows_read: int
    bytes_read: int


class QuerySummary(BaseModel):
    interval: str
    since: datetime
    until: datetime
    buckets: list[SummaryBucket]


class UserSummary(BaseModel):
    user_id: uuid.UUID
    count: int
    errors: int
    execution_time_ms: Times
    rows_read: int
    bytes_read: int


class MetricPoint(BaseModel):
    bucket: datetime
    value: float
    samples: int


class MetricSeries(BaseModel):
    name: str
    aggregation: str
    step_seconds: int
    points: list[MetricPoint]
