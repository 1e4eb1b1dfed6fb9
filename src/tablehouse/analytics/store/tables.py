"""How an event kind becomes a row of its ClickHouse table.

The writer converts each event when it is emitted (so a later change to a mutable event
cannot alter what was logged, and an event that cannot be converted is set aside at once),
and converts the spool's JSON back into the same row on replay. Both directions live here,
one ``ColumnType`` per ClickHouse type, so a new table is a column list and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
# What a UUID column holds for "none": ClickHouse's default, cheaper than Nullable(UUID).
NIL_UUID = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class ColumnType:
    """One ClickHouse type: from an event's value, and from the spool's JSON value."""

    name: str
    from_event: Callable[[Any], Any]
    from_json: Callable[[Any], Any]


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _uuid_or_nil(value: Any) -> uuid.UUID:
    return NIL_UUID if value is None else _uuid(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _nullable_string(value: Any) -> str | None:
    return None if value is None else _string(value)


def _unsigned(maximum: int) -> Callable[[Any], int]:
    # Durations are floats in events; a negative or oversized value would make ClickHouse
    # refuse the whole batch, so it is clamped rather than poisoning its neighbours.
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        return min(max(round(value), 0), maximum)

    return convert


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: events carry aware timestamps")
    return value.astimezone(UTC)


def _utc_from_json(value: Any) -> datetime:
    return _utc(datetime.fromisoformat(value))


def _same(value: Any) -> Any:
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise TypeError("expected a mapping of strings to strings")
    return dict(value)


UUID = ColumnType("UUID", _uuid, _uuid)
UUID_OR_NIL = ColumnType("UUID", _uuid_or_nil, _uuid)
STRING = ColumnType("String", _string, _same)
NULLABLE_STRING = ColumnType("Nullable(String)", _nullable_string, _same)
UINT32 = ColumnType("UInt32", _unsigned(UINT32_MAX), _same)
UINT64 = ColumnType("UInt64", _unsigned(UINT64_MAX), _same)
DATETIME64_UTC = ColumnType("DateTime64(3, 'UTC')", _utc, _utc_from_json)
FLOAT64 = ColumnType("Float64", _float, _float)
METRIC_TYPE = ColumnType("Enum8('gauge' = 1, 'counter' = 2, 'histogram' = 3)", _string, _same)
TAGS = ColumnType("Map(LowCardinality(String), String)", _tags, _tags)


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    columns: tuple[str, ...]
    types: tuple[ColumnType, ...]

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.types):
            raise ValueError(f"{self.table}: {len(self.columns)} columns, {len(self.types)} types")

    @classmethod
    def of(cls, table: str, columns: Sequence[tuple[str, ColumnType]]) -> TableSpec:
        return cls(table, tuple(name for name, _ in columns), tuple(kind for _, kind in columns))

    def narrowed(self, columns: Sequence[str]) -> TableSpec | None:
        """This table with only ``columns`` (a spool written by a version that had fewer; the
        store fills the others with their defaults), or None if one of them is unknown."""
        if tuple(columns) == self.columns:
            return self
        kinds = dict(zip(self.columns, self.types, strict=True))
        if not set(columns) <= kinds.keys() or len(set(columns)) != len(columns):
            return None
        return TableSpec(self.table, tuple(columns), tuple(kinds[name] for name in columns))

    def row(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row for ``Event.record()``; KeyError/TypeError/ValueError if it does not fit."""
        return tuple(
            kind.from_event(record[name])
            for name, kind in zip(self.columns, self.types, strict=True)
        )

    def row_from_json(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """The row as it was before the spool wrote it (UUIDs and datetimes as strings)."""
        if len(values) != len(self.types):
            raise ValueError(f"{self.table}: expected {len(self.types)} values, got {len(values)}")
        return tuple(kind.from_json(value) for kind, value in zip(self.types, values, strict=True))


QUERY_LOGS = TableSpec.of(
    "query_logs",
    [
        ("query_id", UUID),
        ("user_id", UUID),
        ("query_text", STRING),
        ("status", STRING),
        ("error", NULLABLE_STRING),
        ("execution_time_ms", UINT32),
        ("rows_read", UINT64),
        ("bytes_read", UINT64),
        ("timestamp", DATETIME64_UTC),
        ("api_key_id", UUID_OR_NIL),
        ("execution_time_us", UINT64),
        ("source", STRING),
    ],
)

METRICS = TableSpec.of(
    "metrics",
    [
        ("metric_name", STRING),
        ("value", FLOAT64),
        ("metric_type", METRIC_TYPE),
        ("tags", TAGS),
        ("timestamp", DATETIME64_UTC),
    ],
)

DEFAULT_TABLES: dict[str, TableSpec] = {"query.executed": QUERY_LOGS, "metric.sample": METRICS}
