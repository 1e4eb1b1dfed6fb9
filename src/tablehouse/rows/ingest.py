"""Row ingest: read the spooled body, validate every row, write in batches, all or nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.datasets.models import Schema
from tablehouse.errors import InvalidRows
from tablehouse.rows.layout import Layout, Problems
from tablehouse.rows.parsing import NotJson, body_format, csv_rows, json_values, ndjson_rows
from tablehouse.rows.schemas import IngestReport, OnInvalid, RowProblem
from tablehouse.rows.spool import chunks_of
from tablehouse.rows.writer import OnConflict, Record, Writer

Converted = tuple[Record | None, Problems]
Run = tuple[int, list[Converted]]  # the index of the run's first row, and its rows
# A run of a JSON array: at most this many rows, or about this much of the body.
JSON_RUN_ROWS = 1000
JSON_RUN_BYTES = 1024**2


@dataclass(frozen=True, slots=True)
class IngestOptions:
    on_conflict: OnConflict = "error"
    on_invalid: OnInvalid = "error"
    batch_rows: int = 5000
    max_reported: int = 100
    # The format the path names (rows.csv, rows.ndjson), whatever the Content-Type says.
    form: str | None = None


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


async def ingest(
    session: AsyncSession,
    *,
    schema: Schema,
    body: IO[bytes],
    content_type: str | None,
    options: IngestOptions,
) -> IngestReport:
    layout = Layout.of(schema, storing_in=session.get_bind().dialect.name)
    writer = Writer(session, layout, options.on_conflict)
    batch = _Batch(writer, options.batch_rows)
    problems: list[RowProblem] = []
    problem_count = received = 0
    try:
        async for first, run in converted_rows(layout, body, content_type, options.form):
            received += len(run)
            for index, (record, issues) in enumerate(run, start=first):
                if issues:
                    problem_count += 1
                    problems += [RowProblem(row=index, field=f, message=m) for f, m in issues]
                elif problem_count == 0 or options.on_invalid == "skip":
                    assert record is not None
                    batch.add(record, index)
            if options.on_invalid == "error" and len(problems) >= options.max_reported:
                break  # enough to tell the client; nothing will be written anyway
            await batch.flush_full()
        if problems and options.on_invalid == "error":
            raise InvalidRows(_as_dicts(problems[: options.max_reported]), total=problem_count)
        await batch.flush()
    except BaseException:
        await batch.abandon()
        raise
    return IngestReport(
        inserted=batch.written,
        received=received,
        skipped=received - problem_count - batch.written if options.on_conflict == "skip" else 0,
        rejected=problems[: options.max_reported] if options.on_invalid == "skip" else None,
        rejected_count=problem_count,
    )


def _as_dicts(problems: list[RowProblem]) -> list[dict[str, Any]]:
    return [problem.model_dump() for problem in problems]


class _Batch:
    """Collects records and writes them a batch at a time.

    A batch is written in the background while the next part of the body is converted:
    the database works on one batch while Python prepares the next. At most one write is
    in flight, and it is always awaited before the next write, the end, or an error.
    """

    def __init__(self, writer: Writer, size: int) -> None:
        self.writer = writer
        self.size = size
        self.records: list[Record] = []
        self.rows: list[int] = []
        self.written = 0
        self._in_flight: asyncio.Task[int] | None = None

    def add(self, record: Record, row: int) -> None:
        self.records.append(record)
        self.rows.append(row)

    async def flush_full(self) -> None:
        """Write whole batches of ``size``; keep the remainder for later."""
        while len(self.records) >= self.size:
            await self._write(self.records[: self.size], self.rows[: self.size])
            self.records, self.rows = self.records[self.size :], self.rows[self.size :]

    async def flush(self) -> None:
        await self.flush_full()
        if self.records:
            await self._write(self.records, self.rows)
            self.records, self.rows = [], []
        await self.settle()

    async def _write(self, records: list[Record], rows: list[int]) -> None:
        await self.settle()
        self._in_flight = asyncio.create_task(self.writer.write(records, rows))

    async def settle(self) -> None:
        """Wait for the write in flight, if any (its error, if any, is raised here)."""
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            self.written += await task

    async def abandon(self) -> None:
        """After a failure elsewhere: let the write in flight end before the rollback."""
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            with contextlib.suppress(Exception):
                await task
