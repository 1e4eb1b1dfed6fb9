"""Rows of a dataset: load them (JSON, NDJSON or CSV bodies, in batches, all or nothing), list
them, and read, change or delete one by its primary key.

Each operation asks the datasets service for the dataset (404 when the caller may not use it),
then does its own work through the repository. Reads take no lock on the catalog row (on
PostgreSQL that would cost each read a transaction id, a row lock and a WAL flush): a dataset
dropped or changed between the catalog read and the row statement makes that statement name a
table or column that is gone, once the change has committed; then the dataset is read again,
once, and the read sees it as it is now, or 404 if it was dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy.exc import DBAPIError, IntegrityError

from tablehouse.api.runtime import Runtime
from tablehouse.auth.principal import Principal
from tablehouse.core.database import ReadSession, WriteSession, backend_of
from tablehouse.datasets import service as datasets
from tablehouse.datasets.models import Dataset
from tablehouse.errors import Conflict, InvalidInput, InvalidRows, NotFound
from tablehouse.rows import repository
from tablehouse.rows.bodies.parsing import body_decoder, without_bom
from tablehouse.rows.bodies.runs import FileRow as FileRow  # the CLI's import reads files here
from tablehouse.rows.bodies.runs import converted_rows, file_rows
from tablehouse.rows.bodies.spool import spooled
from tablehouse.rows.convert import keys
from tablehouse.rows.convert.changes import checked_changes
from tablehouse.rows.convert.layout import Layout
from tablehouse.rows.convert.layout import Record as Record  # the CLI's import writes these
from tablehouse.rows.convert.rendering import record
from tablehouse.rows.filtering.listing import Plan
from tablehouse.rows.repository import Writer
from tablehouse.rows.schemas import (
    IngestOptions,
    IngestReport,
    ReadRequest,
    RowPage,
    RowProblem,
)
from tablehouse.rows.schemas import (
    OnConflict as OnConflict,
)

# Loading rows


async def load_rows(
    session: WriteSession,
    runtime: Runtime,
    *,
    caller: Principal,
    name: str,
    owner_id: uuid.UUID | None,
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    content_encoding: str | None,
    options: IngestOptions,
) -> IngestReport:
    """The body (``chunks``) received whole, then its rows written into the caller's dataset
    ``name``, whose catalog row is share-locked from then until the unit of work ends."""
    async with _received_body(runtime, caller, chunks, content_encoding) as body:
        dataset = await datasets.load_locked(
            session, caller=caller, name=name, owner_id=owner_id, lock="share"
        )
        report = await ingest(
            session, dataset=dataset, body=body, content_type=content_type, options=options
        )
    runtime.metrics.ingested_rows.inc(report.inserted)
    return report


@asynccontextmanager
async def _received_body(
    runtime: Runtime,
    caller: Principal,
    chunks: AsyncIterator[bytes],
    content_encoding: str | None,
) -> AsyncIterator[IO[bytes]]:
    """The whole body, spooled, with one of the caller's load slots held (429 when none is
    free). The session is first used after this: no lock or connection waits for the client.
    A compressed body is spooled inflated, held to MAX_INGEST_BYTES once inflated too."""
    decode = body_decoder(content_encoding)  # 415 before any is read
    limit = runtime.settings.max_ingest_bytes
    with (
        runtime.ingest_slots.slot(caller.user.id),
        runtime.metrics.ingests_in_progress.track_inprogress(),
    ):
        async with spooled(without_bom(decode(chunks, limit))) as body:
            yield body


async def ingest(
    session: WriteSession,
    *,
    dataset: Dataset,
    body: IO[bytes],
    content_type: str | None,
    options: IngestOptions,
) -> IngestReport:
    """Read the spooled body, validate every row, write in batches, all or nothing."""
    layout = Layout.of(dataset, storing_in=backend_of(session))
    writer = Writer(session, layout, options.on_conflict)
    batch = Batch(writer, options.batch_rows)
    problems: list[RowProblem] = []
    problem_count = received = 0
    try:
        async for first, run in converted_rows(layout, body, content_type, options.form):
            received += len(run)
            for index, (converted, issues) in enumerate(run, start=first):
                if issues:
                    problem_count += 1
                    problems += [RowProblem(row=index, field=f, message=m) for f, m in issues]
                elif problem_count == 0 or options.on_invalid == "skip":
                    assert converted is not None
                    batch.add(converted, index)
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


class Batch:
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

    def add(self, converted: Record, row: int) -> None:
        self.records.append(converted)
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


# Importing a file (``tablehouse import``): the parsers, converters and writer of a load, with
# a unit of work per batch so that a stopped import can go on where it stopped.


@dataclass(frozen=True, slots=True)
class ImportTarget:
    """A dataset as an import found it: its batches are written while it is at ``version``."""

    name: str
    version: int
    layout: Layout


async def import_target(session: ReadSession, *, caller: Principal, name: str) -> ImportTarget:
    dataset = await datasets.load(session, caller=caller, name=name)
    layout = Layout.of(dataset, storing_in=backend_of(session))
    return ImportTarget(name, dataset.version, layout)


def read_file(
    target: ImportTarget, chunks: AsyncIterator[bytes], form: str, *, skip: int = 0
) -> AsyncIterator[list[FileRow]]:
    """The file's rows in runs (see ``bodies.runs.file_rows``), after the first ``skip``."""
    return file_rows(target.layout, chunks, form, skip=skip)


async def write_batch(
    session: WriteSession,
    *,
    caller: Principal,
    target: ImportTarget,
    records: list[Record],
    rows: list[int],
    on_conflict: OnConflict,
) -> int:
    """One batch of an import, in its own unit of work (``session``): the rows written."""
    current = await datasets.load_locked(session, caller=caller, name=target.name, lock="share")
    if current.version != target.version:
        raise Conflict(
            f"the dataset {target.name} changed during the import", code="schema_changed"
        )
    return await Writer(session, target.layout, on_conflict).write(records, rows)


# Listing rows


async def list_rows(
    session: ReadSession,
    *,
    caller: Principal,
    name: str,
    owner_id: uuid.UUID | None,
    request: ReadRequest,
) -> RowPage:
    """A page of the caller's dataset ``name``: filtered, ordered, after the cursor."""
    dataset = await datasets.load(session, caller=caller, name=name, owner_id=owner_id)
    try:
        return await _page(session, dataset, request)
    except DBAPIError as exc:
        if not datasets.changed_meanwhile(exc):
            raise
    dataset = await _reloaded(session, caller=caller, name=name, owner_id=owner_id)
    return await _page(session, dataset, request)


async def _page(session: ReadSession, dataset: Dataset, request: ReadRequest) -> RowPage:
    plan = Plan.of(Layout.of(dataset), request, backend=backend_of(session))
    rows = await repository.page(session, plan, request.limit)
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    shown = len(plan.shown)
    return RowPage(
        rows=[record(plan.shown, row[:shown]) for row in rows],
        next=plan.cursor_after(rows[-1]) if more else None,
        count=None
        if request.count is None
        else await repository.count(session, plan, request.count),
    )


async def _reloaded(
    session: ReadSession, *, caller: Principal, name: str, owner_id: uuid.UUID | None
) -> Dataset:
    """The dataset read again after a statement found it changed or gone (404 if gone)."""
    await session.rollback()  # also forgets the stale catalog row
    return await datasets.load(session, caller=caller, name=name, owner_id=owner_id)


# One row by its key

# Datasets a read by key found, per process: the next read of the same dataset checks the
# catalog in the statement that reads the row, one round trip instead of two.
KNOWN_DATASETS = 1024


@dataclass(frozen=True, slots=True)
class _Known:
    dataset_id: uuid.UUID
    version: int
    layout: Layout


_known: OrderedDict[tuple[uuid.UUID, str], _Known] = OrderedDict()


async def read_row(
    session: ReadSession,
    *,
    caller: Principal,
    name: str,
    owner_id: uuid.UUID | None,
    key: str,
) -> dict[str, Any]:
    """The row ``key`` of the caller's dataset ``name``, or 404.

    A dataset read before is read again through the layout kept from then, in one statement
    that also reads the dataset's catalog row: if that row is gone or at another version,
    or the table is, the kept layout is forgotten and the dataset is looked up afresh. The
    catalog check and the row come from one snapshot, so a changed dataset is never read
    through an old layout, whichever process changed it.
    """
    remembered = (datasets.owner_of(caller, owner_id), name)
    known = _known.get(remembered) if caller.may_use_dataset(name) else None
    if known is not None:
        found = await _read_known(session, known, key)
        if found is not None:
            return found
        _known.pop(remembered, None)
    dataset = await datasets.load(session, caller=caller, name=name, owner_id=owner_id)
    try:
        row = await _row(session, dataset, key)
    except DBAPIError as exc:
        if not datasets.changed_meanwhile(exc):
            raise
        dataset = await _reloaded(session, caller=caller, name=name, owner_id=owner_id)
        row = await _row(session, dataset, key)
    _remember(remembered, _Known(dataset.id, dataset.version, Layout.of(dataset)))
    return row


async def _read_known(session: ReadSession, known: _Known, key: str) -> dict[str, Any] | None:
    """The row through a kept layout; None when the layout may be out of date."""
    layout = known.layout
    try:
        values = keys.values(layout, key)
    except InvalidInput:
        return None  # refused by the kept layout: let the current one say why
    try:
        row = await repository.checked_by_key(session, layout, known.dataset_id, values)
    except DBAPIError as exc:
        if not datasets.changed_meanwhile(exc):
            raise
        await session.rollback()
        return None
    if row is None or row[0] != known.version:
        return None
    fields = row[1:]
    if fields[layout.names.index(layout.key[0])] is None:  # a key field is never null
        raise _not_found(key)
    return record(layout.names, fields)


def _remember(remembered: tuple[uuid.UUID, str], known: _Known) -> None:
    _known[remembered] = known
    _known.move_to_end(remembered)
    if len(_known) > KNOWN_DATASETS:
        _known.popitem(last=False)


async def _row(session: ReadSession, dataset: Dataset, key: str) -> dict[str, Any]:
    layout = Layout.of(dataset)
    row = await repository.by_key(session, layout, keys.values(layout, key))
    if row is None:
        raise _not_found(key)
    return record(layout.names, row)


async def update_row(
    session: WriteSession, *, dataset: Dataset, key: str, changes: Any
) -> dict[str, Any]:
    """Set the fields in ``changes`` (a JSON object), checked as ingest checks them."""
    layout = Layout.of(dataset, storing_in=backend_of(session))
    key_values = keys.values(layout, key)
    values = checked_changes(layout, changes)
    try:
        row = await repository.update_by_key(session, layout, key_values, values)
    except IntegrityError:
        raise _unique_violation(layout, values) from None
    if row is None:
        raise _not_found(key)
    return record(layout.names, row)


async def delete_row(session: WriteSession, *, dataset: Dataset, key: str) -> None:
    layout = Layout.of(dataset)
    if not await repository.delete_by_key(session, layout, keys.values(layout, key)):
        raise _not_found(key)


def _unique_violation(layout: Layout, values: Mapping[str, Any]) -> Conflict:
    unique = [name for name in values if layout.by_name[name].unique]
    which = ", ".join(f"'{name}'" for name in unique) or "a unique field"
    return Conflict(f"another row already has this value of {which}", code="unique_violation")


def _not_found(key: str) -> NotFound:
    return NotFound(f"no row with key '{key}'", code="row_not_found")
