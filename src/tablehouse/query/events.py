"""What each query leaves behind for the query log, accepted or refused."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

QueryStatus = Literal["ok", "refused", "timeout", "error"]


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

    def record(self) -> Mapping[str, Any]:
        # Not dataclasses.asdict, which deep-copies every value: one event per query.
        return {name: getattr(self, name) for name in self.__slots__}
