"""Request bodies to raw rows: JSON (object or array), NDJSON and CSV.

NDJSON and CSV are parsed a chunk at a time; a JSON array is parsed incrementally, one
element at a time, from a file (the spooled body); a single JSON object is read whole.
Before that, a compressed body (``Content-Encoding: gzip`` or ``deflate``) is inflated as it
arrives, and a leading UTF-8 byte-order mark is dropped (see ``body_decoder``, ``without_bom``).
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import math
import re
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import IO, Any

import ijson  # type: ignore[import-untyped]  # no type information published
import orjson

from tablehouse.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedContentEncoding,
    UnsupportedMediaType,
)
from tablehouse.rows.convert.values import json_text, may_hold_big_integers

FORMATS = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json-lines": "ndjson",
    "text/csv": "csv",
}


class NotJson:
    """Marks an NDJSON line that is not valid JSON, so the row can be reported (with the
    line itself, where the report quotes it)."""

    def __init__(self, reason: str, line: str) -> None:
        self.reason = reason
        self.line = line


def body_format(content_type: str | None) -> str:
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    try:
        return FORMATS[media_type]
    except KeyError:
        raise UnsupportedMediaType(
            f"cannot read rows from {media_type!r}; send application/json, "
            "application/x-ndjson or text/csv"
        ) from None


JSON_ARRAY_ITEMS = "item"  # ijson's prefix for each element of a top-level array
# orjson's own limit, for arrays as for the rest: deeper is refused, not a RecursionError.
MAX_JSON_NESTING = 1024


# Content-Encoding -> zlib's wbits: 31 reads the gzip format, 15 the zlib format, which is
# what HTTP's "deflate" is (RFC 9110 8.4.1.2).
ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
INFLATE_STEP = 256 * 1024  # the most one step inflates: a zip bomb is never in memory whole
BOM = codecs.BOM_UTF8
Decoder = Callable[[AsyncIterator[bytes], int], AsyncIterator[bytes]]


def body_decoder(content_encoding: str | None) -> Decoder:
    """What reads the body as sent, ``limit`` bytes at most, or 415 for an unknown coding."""
    coding = (content_encoding or "").strip().lower()
    if coding in ("", "identity"):
        return limited
    wbits = ENCODINGS.get(coding)
    if wbits is None:
        raise UnsupportedContentEncoding(
            f"cannot read a body with Content-Encoding {coding[:40]!r}; "
            "send it uncompressed, gzip or deflate",
            accepted="gzip, deflate",
        )
    return functools.partial(inflated, wbits=wbits)


async def inflated(chunks: AsyncIterator[bytes], limit: int, *, wbits: int) -> AsyncIterator[bytes]:
    """The body inflated as it arrives. Both sizes are held to ``limit``: what it inflates
    to (a zip bomb stops there), and what is received (empty blocks inflate to nothing)."""
    inflater = _Inflater(wbits)
    size = 0
    async for chunk in limited(chunks, limit):
        for piece in inflater.feed(chunk):
            size += len(piece)
            if size > limit:
                raise PayloadTooLarge(
                    f"the body is larger than the {limit:,}-byte limit (MAX_INGEST_BYTES) "
                    "once decompressed"
                )
            yield piece
    inflater.finish()


class _Inflater:
    """zlib a step of ``INFLATE_STEP`` bytes at a time; gzip members may follow each other."""

    def __init__(self, wbits: int) -> None:
        self.wbits = wbits
        self.stream = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            if self.stream.eof:
                data = self.stream.unused_data + data
                if not data:
                    return
                self._next_member()
            try:
                piece = self.stream.decompress(data, INFLATE_STEP)
            except zlib.error as exc:
                raise _not_compressed(str(exc)) from None
            if piece:
                yield piece
            data = self.stream.unconsumed_tail
            # A full step may leave output in zlib with no input left: ask again.
            if not data and len(piece) < INFLATE_STEP and not self.stream.unused_data:
                return

    def _next_member(self) -> None:
        if self.wbits != ENCODINGS["gzip"]:
            raise _not_compressed("data after the end of the compressed stream")
        self.stream = zlib.decompressobj(self.wbits)

    def finish(self) -> None:
        if not self.stream.eof:
            raise _not_compressed("the body ends before the end of the compressed stream")


def _not_compressed(reason: str) -> BadRequest:
    return BadRequest(
        f"the body does not match its Content-Encoding: {reason}", code="invalid_content_encoding"
    )


async def without_bom(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body without a leading UTF-8 byte-order mark (spreadsheets write one)."""
    start = b""
    async for chunk in chunks:
        start += chunk
        if len(start) >= len(BOM) or not BOM.startswith(start):
            break
    if body := start.removeprefix(BOM):
        yield body
    async for chunk in chunks:
        yield chunk


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


def json_values(body: IO[bytes]) -> Iterator[Any]:
    """The rows of a JSON body: each element of an array, parsed as it is read, or the one
    value of any other document. Numbers come as orjson gives them, floats for those with
    a fraction or exponent, except that integers stay exact however large.

    Blocking: run it in a worker thread.
    """
    if _first_byte(body) != b"[":
        yield _whole_document(body.read())
        return
    parse = _PYTHON_JSON.items if _has_surrogate_escape(body) else ijson.items
    try:
        for value in parse(body, JSON_ARRAY_ITEMS):
            yield _with_floats(value)
    except ijson.JSONError as exc:
        raise _not_json(exc) from None


# ijson's C backend reads an escaped half of a UTF-16 pair ("\\ud800") as "?", silently
# changing the text; its Python backend keeps it, for the row's checks to refuse. A body with
# such an escape (rare: a surrogate pair, or text that only looks like one) takes the slower
# one; the scan costs about a millisecond a megabyte.
_PYTHON_JSON = ijson.get_backend("python")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SCAN_CHUNK = 1 << 20


def _has_surrogate_escape(body: IO[bytes]) -> bool:
    start = body.tell()
    tail = b""
    try:
        while chunk := body.read(_SCAN_CHUNK):
            if _SURROGATE_ESCAPE.search(tail + chunk):
                return True
            tail = chunk[-5:]  # an escape cut by the chunk's end
        return False
    finally:
        body.seek(start)


def _with_floats(value: Any) -> Any:
    """``value`` with each Decimal (ijson's numbers with a fraction or an exponent) made the
    float orjson would have made; walked with a stack, not recursion, however deep."""
    if type(value) is Decimal:
        return _float(value)
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        container, depth = pending.pop()
        if type(container) is not dict and type(container) is not list:
            continue
        if depth > MAX_JSON_NESTING:
            raise BadRequest(
                f"the body is not valid JSON: nested deeper than {MAX_JSON_NESTING:,} levels",
                code="invalid_json",
            )
        members = container.items() if type(container) is dict else enumerate(container)
        for key, member in members:
            if type(member) is Decimal:
                container[key] = _float(member)
            elif type(member) is dict or type(member) is list:
                pending.append((member, depth + 1))
    return value


def _float(number: Decimal) -> float:
    converted = float(number)  # correctly rounded, as orjson rounds
    if not math.isfinite(converted):
        raise BadRequest(
            "the body is not valid JSON: a number is too large for a 64-bit float",
            code="invalid_json",
        )
    return converted


def _first_byte(body: IO[bytes]) -> bytes:
    """The first byte that is not white space; the file is left where it was."""
    start = body.tell()
    head = body.read(1024).lstrip(b" \t\r\n")[:1]
    body.seek(start)
    return head


def _whole_document(raw: bytes) -> Any:
    try:
        return json_text(raw)  # integers exact, as ijson gives them in an array
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None


def _not_json(exc: ijson.JSONError) -> BadRequest:
    # yajl's message quotes the input around the error; its first line says what is wrong.
    text = exc.args[0] if exc.args else exc
    reason = (text.decode(errors="replace") if isinstance(text, bytes) else str(text)).strip()
    reason = reason.splitlines()[0] if reason else "cannot be parsed"
    return BadRequest(f"the body is not valid JSON: {reason}", code="invalid_json")


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
        return NotJson(str(exc), line)


def _exact_json_line(line: str) -> Any:
    try:
        return json_text(line)
    except ValueError as exc:
        return NotJson(str(exc), line)


async def ndjson_rows(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Any]]:
    """Rows in runs, one list per piece of the body (per-row async steps would cost more)."""
    async for run in _text(chunks):
        # Rarely, a run may hold an integer beyond 64 bits: its lines keep integers exact.
        parse = _exact_json_line if may_hold_big_integers(run) else _json_line
        yield [parse(line) for line in run.splitlines() if line.strip()]


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
