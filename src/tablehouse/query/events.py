"""What each query leaves behind for the query log, accepted or refused: one QueryExecuted
event, whatever became of it (:func:`logged`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from tablehouse.auth.principal import Principal
from tablehouse.core.events import EventSink
from tablehouse.errors import TablehouseError

QueryStatus = Literal["ok", "refused", "timeout", "error"]
# Where a query was sent from: the HTTP API or ``tablehouse query``.
QuerySource = Literal["api", "cli"]


@dataclass(frozen=True, slots=True)
class QueryExecuted:
    kind: ClassVar[str] = "query.executed"

    query_id: uuid.UUID
    user_id: uuid.UUID
    query_text: str
    status: QueryStatus
    error: str | None
    execution_time_ms: float
    rows_read: int
    bytes_read: int
    timestamp: datetime
    api_key_id: uuid.UUID | None = None  # None: sent with a login session
    source: QuerySource = "api"

    def record(self) -> Mapping[str, Any]:
        # Not dataclasses.asdict, which deep-copies every value: one event per query.
        values = {name: getattr(self, name) for name in self.__slots__}
        # The log keeps whole milliseconds (the spec's column) and microseconds, which tell
        # sub-millisecond queries apart.
        values["execution_time_us"] = round(self.execution_time_ms * 1000)
        return values


_STATUS_BY_CODE: dict[str, QueryStatus] = {
    "query_timeout": "timeout",
    "query_failed": "error",
    "invalid_parameter": "error",
}


@dataclass(slots=True)
class Outcome:
    """Filled in as a query runs; becomes its QueryExecuted event."""

    status: QueryStatus = "ok"
    error: str | None = None
    execution_time_ms: float = 0.0
    rows_read: int = 0
    bytes_read: int = 0
    started: float | None = None  # when the statement went to the database

    def executing(self) -> None:
        self.started = time.perf_counter()

    def measured(self) -> None:
        if self.started is not None:
            self.execution_time_ms = (time.perf_counter() - self.started) * 1000

    def failed(self, error: BaseException) -> None:
        if isinstance(error, TablehouseError):
            self.status = _STATUS_BY_CODE.get(error.code, "refused")
            self.error = f"{error.code}: {error.message}"
        elif isinstance(error, GeneratorExit | asyncio.CancelledError):
            self.status, self.error = "error", "cancelled: the client went away"
        else:
            self.status, self.error = "error", f"internal: {type(error).__name__}"


@contextmanager
def logged(
    events: EventSink,
    caller: Principal,
    sql: str,
    query_id: uuid.UUID,
    *,
    failures_only: bool = False,
    source: QuerySource = "api",
) -> Iterator[Outcome]:
    """Emit the query's event when the block ends, however it ends."""
    outcome = Outcome()
    try:
        yield outcome
    except BaseException as exc:
        outcome.failed(exc)
        if not outcome.execution_time_ms:
            outcome.measured()
        raise
    finally:
        if outcome.status != "ok" or not failures_only:
            events.emit(
                QueryExecuted(
                    query_id=query_id,
                    user_id=caller.user.id,
                    query_text=sql,
                    status=outcome.status,
                    error=outcome.error,
                    execution_time_ms=round(outcome.execution_time_ms, 3),
                    rows_read=outcome.rows_read,
                    bytes_read=outcome.bytes_read,
                    timestamp=datetime.now(UTC),
                    api_key_id=caller.api_key_id,
                    source=source,
                )
            )
