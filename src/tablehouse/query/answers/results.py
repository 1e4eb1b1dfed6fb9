"""Turning rows into the answer: one JSON document with caps, or a CSV / NDJSON stream."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tablehouse.query.answers.encoding import csv_value, encode
from tablehouse.query.backends.execution import FIRST_BATCH_ROWS, Column, Cursor, Row

# Rows are fetched in batches that start small (FIRST_BATCH_ROWS) and grow while the rows
# stay small, so a point query or a small aggregate takes one fetch, and rows of a megabyte
# each are never fetched a thousand at a time: the next batch holds at most what the bytes
# left can take.
MAX_BATCH_ROWS = 1000
BATCH_GROWTH = 4
# A CSV or NDJSON stream sends chunks of about this many bytes.
STREAM_CHUNK_BYTES = 1024**2


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


def column_types(columns: Sequence[Column], samples: Sequence[Any]) -> list[dict[str, str]]:
    """Each column's type: the database's when it said, else (SQLite) the type of its first
    value that is not null (``samples``), or "null" when every value is."""
    described = []
    for column, sample in zip(columns, samples, strict=True):
        kind = column.type
        if kind is None:
            kind = "null" if sample is None else _PYTHON_TYPES.get(type(sample), "string")
        described.append({"name": column.name, "type": kind})
    return described


def next_batch(*, previous: int, rows_left: int, bytes_left: int, largest_row: int) -> int:
    """How many rows to fetch next: ``BATCH_GROWTH`` times the last batch at most, and no
    more than the bytes left would hold at the largest row seen so far (plus one, which
    either fits or proves the result was cut)."""
    by_size = bytes_left // max(largest_row, 1) + 1
    return max(1, min(previous * BATCH_GROWTH, MAX_BATCH_ROWS, rows_left, by_size))


@dataclass(slots=True)
class Collected:
    """The rows of an answer, each encoded once; the values themselves are not kept."""

    samples: list[Any]  # the first value of each column that is not null
    encoded: list[bytes] = field(default_factory=list)
    size: int = 0
    truncated: bool = False
    _unsampled: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, columns: Sequence[Column]) -> Collected:
        return cls(samples=[None] * len(columns), _unsampled=list(range(len(columns))))

    @property
    def row_count(self) -> int:
        return len(self.encoded)

    def add(self, row: Row, encoded: bytes) -> None:
        self.encoded.append(encoded)
        self.size += len(encoded)
        if self._unsampled:
            for index in self._unsampled:
                self.samples[index] = row[index]
            self._unsampled = [index for index in self._unsampled if row[index] is None]


async def collect(cursor: Cursor, *, max_rows: int, max_bytes: int) -> Collected:
    """Up to ``max_rows`` rows and ``max_bytes`` of encoded rows. One row more than the cap
    is fetched to learn whether the result was cut (``truncated``), and the fetch stops as
    soon as either cap is reached."""
    result = Collected.of(cursor.columns)
    asked = min(max_rows + 1, FIRST_BATCH_ROWS)
    largest = 0
    while True:
        batch = await cursor.fetch(asked)
        for row in batch:
            encoded = encode(list(row))
            if result.row_count == max_rows or result.size + len(encoded) > max_bytes:
                result.truncated = True
                return result
            result.add(row, encoded)
            largest = max(largest, len(encoded))
        if len(batch) < asked:
            return result
        asked = next_batch(
            previous=asked,
            rows_left=max_rows + 1 - result.row_count,
            bytes_left=max_bytes - result.size,
            largest_row=largest,
        )


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
            "row_count": collected.row_count,
            "truncated": collected.truncated,
            "stats": {
                "execution_time_ms": round(execution_time_ms, 3),
                "rows_read": rows_read,
                "bytes_read": collected.size,
            },
        }
    )[1:]
    return b"".join([head, b',"rows":[', b",".join(collected.encoded), b"],", tail])


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
    async for batch in _batches(cursor, max_rows, sent):
        writer.writerows([csv_value(value) for value in row] for row in batch)
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
    async for batch in _batches(cursor, max_rows, sent):
        chunk = b"".join(encode(dict(zip(names, row, strict=True))) + b"\n" for row in batch)
        sent.rows += len(batch)
        sent.size += len(chunk)
        yield chunk


async def _batches(cursor: Cursor, max_rows: int, sent: Sent) -> AsyncIterator[list[Row]]:
    """Batches of rows, each sized from the bytes per row of the chunk made from the one
    before (the consumer counts it in ``sent`` before asking for the next batch), so that a
    chunk holds about ``STREAM_CHUNK_BYTES``."""
    asked = min(max_rows, FIRST_BATCH_ROWS)
    while True:
        size_before = sent.size
        batch = await cursor.fetch(asked)
        if batch:
            yield batch
        left = max_rows - sent.rows
        if len(batch) < asked or left <= 0:
            return
        asked = next_batch(
            previous=asked,
            rows_left=left,
            bytes_left=STREAM_CHUNK_BYTES,
            largest_row=(sent.size - size_before) // len(batch),
        )
