"""Request bodies to raw rows: JSON (object or array), NDJSON and CSV.

NDJSON and CSV are parsed as the body streams in, a chunk at a time; JSON is one document
and is read whole (the body limit still applies). Every raw row comes with its index.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tablehouse.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

FORMATS = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json-lines": "ndjson",
    "text/csv": "csv",
}


class NotJson:
    """Marks an NDJSON line that is not valid JSON, so the row can be reported."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def body_format(content_type: str | None) -> str:
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    try:
        return FORMATS[media_type]
    except KeyError:
        raise UnsupportedMediaType(
            f"cannot read rows from {media_type!r}; send application/json, "
            "application/x-ndjson or text/csv"
        ) from None


async def limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Pass the body through, refusing it once it grows past ``limit`` bytes."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(
                f"the body is larger than the {limit:,}-byte limit (MAX_INGEST_BYTES)"
            )
        yield chunk


async def json_rows(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Any]]:
    body = b"".join([chunk async for chunk in chunks])
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    yield document if isinstance(document, list) else [document]


async def _text(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The body as text in runs of whole lines (each run ends with a newline, except the last)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    pending = ""
    try:
        async for chunk in chunks:
            pending += decoder.decode(chunk)
            cut = pending.rfind("\n") + 1
            if cut:
                yield pending[:cut]
                pending = pending[cut:]
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8", code="invalid_encoding") from None
    if pending:
        yield pending


def _json_line(line: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return NotJson(str(exc))


async def ndjson_rows(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Any]]:
    """Rows in runs, one list per piece of the body (per-row async steps would cost more)."""
    async for run in _text(chunks):
        yield [_json_line(line) for line in run.splitlines() if line.strip()]


async def csv_rows(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[list[str]]]:
    """Records (the header first) in runs, one list per piece of the body.

    Text goes to the csv module in runs that end outside quotes, so a quoted cell holding
    a newline is never cut in two.
    """
    runs: list[str] = []
    quotes = 0
    async for text in _text(chunks):
        runs.append(text)
        quotes += text.count('"')
        if quotes % 2:
            continue
        try:
            yield [record for record in csv.reader(io.StringIO("".join(runs))) if record]
        except csv.Error as exc:
            raise BadRequest(f"the CSV is malformed: {exc}", code="invalid_csv") from None
        runs, quotes = [], 0
    if runs:
        raise BadRequest("the CSV ends inside a quoted cell", code="invalid_csv")
