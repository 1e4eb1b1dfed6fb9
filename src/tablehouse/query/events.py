"""What each query leaves behind for the query log, accepted or refused."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

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
