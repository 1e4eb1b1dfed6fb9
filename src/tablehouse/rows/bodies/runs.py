"""A spooled body's rows, converted for a dataset's table, in runs: the part of ingest that
reads; the service writes the runs in batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from tablehouse.rows.bodies.parsing import (
    NotJson,
    body_format,
    csv_rows,
    json_values,
    ndjson_rows,
    without_bom,
)
from tablehouse.rows.bodies.spool import chunks_of
from tablehouse.rows.convert.layout import Layout, Problems, Record

Converted = tuple[Record | None, Problems]
Run = tuple[int, list[Converted]]  # the index of the run's first row, and its rows
# A run of a JSON array: at most this many rows, or about this much of the body.
JSON_RUN_ROWS = 1000
JSON_RUN_BYTES = 1024**2


async def converted_rows(
    layout: Layout, body: IO[bytes], content_type: str | None, form: str | None = None
) -> AsyncIterator[Run]:
    """The body's rows as records for the table (or the problems that stop them), in runs:
    read as ``form`` when it is given, else as the Content-Type says."""
    kind = form or body_format(content_type)
    if kind == "json":
        runs = _json(layout, body)
    elif kind == "csv":
        runs = _csv(layout, chunks_of(body))
    else:
        runs = _ndjson(layout, chunks_of(body))
    async for run in runs:
        yield run


async def _json(layout: Layout, body: IO[bytes]) -> AsyncIterator[Run]:
    """Each run parsed and converted in a worker thread: a large array costs the event loop
    nothing, and its memory is one run, not the whole document."""
    values = json_values(body)
    index = 0
    while run := await asyncio.to_thread(_next_json_run, layout, values, body):
        yield index, run
        index += len(run)


def _next_json_run(layout: Layout, values: Iterator[Any], body: IO[bytes]) -> list[Converted]:
    start = body.tell()
    run = []
    for value in values:
        run.append(layout.from_mapping(value))
        if len(run) >= JSON_RUN_ROWS or body.tell() - start >= JSON_RUN_BYTES:
            break
    return run


async def _ndjson(layout: Layout, chunks: AsyncIterator[bytes]) -> AsyncIterator[Run]:
    index = 0
    async for run in ndjson_rows(chunks):
        yield (
            index,
            [
                (None, [(None, f"not valid JSON: {raw.reason}")])
                if isinstance(raw, NotJson)
                else layout.from_mapping(raw)
                for raw in run
            ],
        )
        index += len(run)


async def _csv(layout: Layout, chunks: AsyncIterator[bytes]) -> AsyncIterator[Run]:
    reader = None
    index = 0
    async for run in csv_rows(chunks):
        if reader is None:
            if not run:
                continue
            reader = layout.text_reader(run[0])
            run = run[1:]
        convert = reader.convert
        yield index, [convert(cells) for cells in run]
        index += len(run)


FileRow = tuple[Record | None, Problems, Any]  # converted, or the problems; the row as read


async def file_rows(
    layout: Layout, chunks: AsyncIterator[bytes], form: str, *, skip: int = 0
) -> AsyncIterator[list[FileRow]]:
    """A CSV or NDJSON file's rows in runs, read by the parsers and converters that read a
    body, each with the row as read (a CSV row as a mapping of its header's names). The
    first ``skip`` rows are read but neither converted nor given."""
    chunks = without_bom(chunks)
    if form == "csv":
        runs = _csv_file(layout, csv_rows(chunks))
    else:
        runs = _ndjson_file(layout, ndjson_rows(chunks))
    async for run in runs:
        if skip >= len(run):
            skip -= len(run)
            continue
        yield run[skip:] if skip else run
        skip = 0


async def _csv_file(layout: Layout, runs: AsyncIterator[list[list[str]]]) -> AsyncIterator[Any]:
    header: list[str] | None = None
    async for run in runs:
        if header is None:
            if not run:
                continue
            header, run = run[0], run[1:]
            reader = layout.text_reader(header)  # unknown or repeated fields: refused
        width = len(header)
        yield [
            (
                *reader.convert(cells),
                dict(zip(header, cells, strict=True)) if len(cells) == width else cells,
            )
            for cells in run
        ]


async def _ndjson_file(layout: Layout, runs: AsyncIterator[list[Any]]) -> AsyncIterator[Any]:
    async for run in runs:
        yield [
            (None, [(None, f"not valid JSON: {raw.reason}")], raw.line)
            if isinstance(raw, NotJson)
            else (*layout.from_mapping(raw), raw)
            for raw in run
        ]
