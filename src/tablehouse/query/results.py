"""Turning rows into the answer: one JSON document with caps, or a CSV / NDJSON stream."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tablehouse.query.execution import Column, Cursor, Row

STREAM_BATCH_ROWS = 500
FETCH_BATCH_ROWS = 1000


def _default(value: Any) -> Any:
    """Values orjson does not know: exact decimals become JSON numbers, durations seconds,
    bytes base64, anything else its text."""
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def encode(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


_PYTHON_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "float",
    str: "string",
    bytes: "bytes",
    decimal.Decimal: "number",
    dt.datetime: "datetime",
    dt.date: "date",
}


def column_types(columns: Sequence[Column], rows: Sequence[Row]) -> list[dict[str, str]]:
    """Each column's type: the database's when it said, else (SQLite) the type of the first
    value that is not null, or "null" when every value is."""
    described = []
    for index, column in enumerate(columns):
        kind = column.type
        if kind is None:
            sample = next((row[index] for row in rows if row[index] is not None), None)
            kind = "null" if sample is None else _PYTHON_TYPES.get(type(sample), "string")
        described.append({"name": column.name, "type": kind})
    return described


@dataclass(slots=True)
class Collected:
    rows: list[Row] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    size: int = 0
    truncated: bool = False


async def collect(cursor: Cursor, *, max_rows: int, max_bytes: int) -> Collected:
    """Up to ``max_rows`` rows and ``max_bytes`` of encoded rows. One row more than the cap
    is fetched to learn whether the result was cut (``truncated``)."""
    result = Collected()
    while True:
        asked = min(max_rows + 1 - len(result.rows), FETCH_BATCH_ROWS)
        batch = await cursor.fetch(asked)
        for row in batch:
            values = list(row)
            encoded = encode(values)
            if len(result.rows) == max_rows or result.size + len(encoded) > max_bytes:
                result.truncated = True
                return result
            result.rows.append(values)
            result.encoded.append(encoded)
            result.size += len(encoded)
        if len(batch) < asked:
            return result


def json_document(
    *,
    query_id: str,
    columns: list[dict[str, str]],
    collected: Collected,
    execution_time_ms: float,
    rows_read: int,
) -> bytes:
    """The answer, assembled from rows encoded once while they were counted."""
    head = encode({"query_id": query_id, "columns": columns})[:-1]
    tail = encode(
        {
            "row_count": len(collected.rows),
            "truncated": collected.truncated,
            "stats": {
                "execution_time_ms": round(execution_time_ms, 3),
                "rows_read": rows_read,
                "bytes_read": collected.size,
            },
        }
    )[1:]
    return b"".join([head, b',"rows":[', b",".join(collected.encoded), b"],", tail])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return encode(value).decode()
    return str(_default(value))


@dataclass(slots=True)
class Sent:
    """What a stream has sent so far, for the query log."""

    rows: int = 0
    size: int = 0


async def csv_stream(cursor: Cursor, *, max_rows: int, sent: Sent) -> AsyncIterator[bytes]:
    """A header row, then up to ``max_rows`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.name for column in cursor.columns])
    async for batch in _batches(cursor, max_rows):
        writer.writerows([_csv_value(value) for value in row] for row in batch)
        chunk = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        sent.rows += len(batch)
        sent.size += len(chunk)
        yield chunk
    if buffer.tell():
        yield buffer.getvalue().encode()


async def ndjson_stream(cursor: Cursor, *, max_rows: int, sent: Sent) -> AsyncIterator[bytes]:
    """One JSON object per row, keyed by column name."""
    names = [column.name for column in cursor.columns]
    async for batch in _batches(cursor, max_rows):
        chunk = b"".join(encode(dict(zip(names, row, strict=True))) + b"\n" for row in batch)
        sent.rows += len(batch)
        sent.size += len(chunk)
        yield chunk


async def _batches(cursor: Cursor, max_rows: int) -> AsyncIterator[list[Row]]:
    left = max_rows
    while left > 0:
        batch = await cursor.fetch(min(left, STREAM_BATCH_ROWS))
        if batch:
            yield batch
        if len(batch) < min(left, STREAM_BATCH_ROWS):
            return
        left -= len(batch)
