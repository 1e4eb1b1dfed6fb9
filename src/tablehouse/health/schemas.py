from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class DatabaseState(BaseModel):
    status: Literal["ok", "unreachable"]
    backend: str
    version: str | None = None
    error: str | None = None
    pool: dict[str, int]
    read_pool: dict[str, int] | None = Field(
        None, description="The pool for reads and SQL queries (on the primary)"
    )


class AnalyticsState(BaseModel):
    """Where this instance's events are. An analytics store that is away never makes the
    instance unready: events wait in the spool and are replayed when it answers."""

    status: Literal["ok", "idle", "starting", "unavailable", "disabled"]
    store: str | None = None
    pending: int = Field(0, description="Events in memory, not yet written")
    spooled: int = Field(0, description="Events waiting on local disk for the store")
    dead_lettered: int = Field(0, description="Events the store refused, set aside in a file")
    lost: int = Field(0, description="Events that could be neither written nor spooled")
    written: int = 0
    last_error: str | None = None


class Readiness(BaseModel):
    """Readiness with the details (versions, pools, where events are): for administrators
    and METRICS_TOKEN."""

    status: Literal["ok", "unavailable"]
    database: DatabaseState
    analytics: AnalyticsState = AnalyticsState(status="disabled")
    replica: DatabaseState | None = Field(
        None, description="The read replica SQL queries run on, when DATABASE_READ_URL is set"
    )

    def summary(self) -> ReadinessSummary:
        return ReadinessSummary(
            status=self.status,
            database=PartStatus(status=self.database.status),
            analytics=PartStatus(status=self.analytics.status),
            replica=None if self.replica is None else PartStatus(status=self.replica.status),
        )


class PartStatus(BaseModel):
    status: Literal["ok", "idle", "unreachable", "starting", "unavailable", "disabled"]


class ReadinessSummary(BaseModel):
    """Readiness for anyone: whether each part is up, nothing about what it is or where."""

    status: Literal["ok", "unavailable"]
    database: PartStatus
    analytics: PartStatus
    replica: PartStatus | None = Field(None, description="Present when DATABASE_READ_URL is set")
