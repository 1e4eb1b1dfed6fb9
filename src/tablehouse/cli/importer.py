"""``tablehouse import``: stream a CSV or NDJSON file into a dataset, batch by batch, resumably."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Literal

import typer
from rich import progress
from rich.console import Console
from rich.table import Column
from rich.text import Text

from tablehouse.cli.common import EXIT_BAD_CONFIGURATION, fail, settings_or_exit
from tablehouse.errors import TablehouseError
from tablehouse.rows.schemas import OnConflict

if TYPE_CHECKING:
    from tablehouse.config import Settings
    from tablehouse.rows.service import FileRow, Record

Format = Literal["csv", "ndjson"]
Write = Callable[[list["Record"], list[int]], Awaitable[int]]
# The file is read in pieces of this size (each one counted by the progress bar).
READ_BYTES = 256 * 1024
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson"}
SHOWN_PROBLEMS = 20


@dataclass
class ImportState:
    """What ``FILE.import-state.json`` records after each committed batch."""

    dataset: str
    owner: str
    format: str
    file_size: int
    file_mtime_ns: int
    rows_committed: int = 0  # valid rows in committed batches
    rows_rejected: int = 0  # invalid rows before the end of the last committed batch
    rows_written: int = 0  # rows the database inserted or updated
    rejects_offset: int = 0  # bytes of the rejects file that belong to those rows

    def same_import(self, other: ImportState) -> bool:
        keys = ("dataset", "owner", "format", "file_size", "file_mtime_ns")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


class _RowsColumn(progress.ProgressColumn):
    def render(self, task: progress.Task) -> Text:
        rows, elapsed = int(task.fields.get("rows", 0)), task.elapsed or 0.0
        rate = f"{rows / elapsed:,.0f}" if elapsed > 0 else "-"
        return Text(f"{rows:,} rows, {rate}/s", style="progress.data.speed")


def _progress_bar(console: Console) -> progress.Progress:
    """One line at any width: the figures never wrap, the file's name is cut short (with
    an ellipsis) and the bar takes what is left, down to nothing on a narrow terminal."""
    figures = Column(no_wrap=True)
    return progress.Progress(
        progress.TextColumn(
            "{task.description}",
            table_column=Column(no_wrap=True, overflow="ellipsis", max_width=console.width // 4),
        ),
        progress.BarColumn(bar_width=None, table_column=Column(ratio=1, no_wrap=True)),
        progress.DownloadColumn(table_column=figures),
        _RowsColumn(table_column=figures),
        progress.TimeRemainingColumn(table_column=figures),
        console=console,
        disable=not console.is_terminal,  # no bar in pipes
        expand=True,
    )


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def import_rows(
    schema: Annotated[str, typer.Argument(metavar="SCHEMA", help="The dataset to import into")],
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", exists=True, dir_okay=False, help="CSV or NDJSON"),
    ],
    owner: Annotated[
        str, typer.Option("--owner", metavar="EMAIL", help="Email of the dataset's owner")
    ],
    file_format: Annotated[
        Format | None,
        typer.Option("--format", metavar="csv|ndjson", help="Default: from the extension"),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="ROWS", min=1, help="Rows per commit")
    ] = 5000,
    on_conflict: Annotated[
        OnConflict,
        typer.Option(
            "--on-conflict",
            metavar="error|skip|update",
            help="A row whose key is stored already: stop, skip it, or update the stored row",
        ),
    ] = "error",
    resume: Annotated[bool, typer.Option("--resume", help="Continue a stopped import")] = False,
) -> None:
    """Import a CSV or NDJSON file into a dataset.

    Imports FILE into dataset SCHEMA. Each batch commits on its own, so a stopped import can
    go on with --resume. Invalid rows are not imported: they go to FILE.rejected.ndjson
    (rows are numbered from 1, after the CSV header)."""
    kind = file_format or EXTENSIONS.get(file.suffix.lower())
    if kind is None:
        raise fail(
            f"cannot tell the format of {file} from its extension: pass --format csv or ndjson",
            EXIT_BAD_CONFIGURATION,
        )
    stat = file.stat()
    job = _Import(file, ImportState(schema, owner, kind, stat.st_size, stat.st_mtime_ns))
    if resume:
        job.load_state()
    elif job.state_path.exists():
        raise fail(
            f"{job.state_path} exists: an earlier import of this file stopped part way; "
            "add --resume to continue it, or delete the file to start over"
        )
    settings = settings_or_exit()
    try:
        asyncio.run(job.run(settings, batch_size, on_conflict))
    except TablehouseError as exc:
        raise fail(exc.message + job.resume_hint("fix the cause and run")) from None
    except KeyboardInterrupt:
        raise fail("interrupted" + job.resume_hint("run"), 130) from None
    job.report()


class _Import:
    def __init__(self, file: Path, state: ImportState) -> None:
        self.file, self.state = file, state
        self.state_path = file.with_name(file.name + ".import-state.json")
        self.rejects_path = file.with_name(file.name + ".rejected.ndjson")
        self.console = Console()
        self.shown: list[str] = []
        self.row = self.bytes_read = self.this_run = self.rejected = self.problems = 0
        self.started = time.monotonic()

    def load_state(self) -> None:
        if not self.state_path.exists():
            raise fail(f"nothing to resume: {self.state_path} does not exist")
        try:
            saved = ImportState(**json.loads(self.state_path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise fail(f"{self.state_path} is not an import state ({exc})") from None
        if not saved.same_import(self.state):
            raise fail(
                f"{self.state_path} belongs to another import (dataset {saved.dataset}, owner "
                f"{saved.owner}, or the file changed since); delete it to start over"
            )
        self.state = saved

    def resume_hint(self, then: str) -> str:
        if not self.state_path.exists():
            return ""
        committed = _rows(self.state.rows_committed)
        return f"; {committed} committed so far: {then} again with --resume to continue"

    async def run(self, settings: Settings, batch_size: int, on_conflict: OnConflict) -> None:
        from sqlalchemy.exc import DBAPIError

        from tablehouse.cli.schemas import _as_owner
        from tablehouse.core.database import create_engine, create_session_factory, uow
        from tablehouse.rows import service

        engine = create_engine(settings)  # one engine; a unit of work per batch
        factory, name = create_session_factory(engine), self.state.dataset
        self.rejected = self.state.rows_rejected
        try:
            async with uow(factory) as session:
                caller = await _as_owner(session, self.state.owner)
                target = await service.import_target(session, caller=caller, name=name)

            async def write(records: list[Record], numbers: list[int]) -> int:
                async with uow(factory) as session:
                    return await service.write_batch(
                        session,
                        caller=caller,
                        target=target,
                        records=records,
                        rows=numbers,
                        on_conflict=on_conflict,
                    )

            done = self.state.rows_committed + self.state.rows_rejected
            self.row = done  # rows before are read again, neither converted nor counted
            with self.file.open("rb") as handle, self._rejects() as rejects:
                runs = service.read_file(target, self._chunks(handle), self.state.format, skip=done)
                await self._stream(runs, rejects, write, batch_size)
        except TablehouseError as exc:
            if exc.code not in ("invalid_csv", "invalid_encoding"):
                raise
            raise TablehouseError(
                f"{self.file}: {exc.message}, near row {self.row + 1:,}"
            ) from None
        except DBAPIError as exc:
            raise TablehouseError(f"database error: {str(exc.orig).splitlines()[0]}") from None
        finally:
            await engine.dispose()
            if self.rejects_path.exists() and not self.rejects_path.stat().st_size:
                self.rejects_path.unlink()
        self.state_path.unlink(missing_ok=True)

    def _rejects(self) -> BinaryIO:
        if self.state.rejects_offset and self.rejects_path.exists():
            handle = self.rejects_path.open("r+b")
            handle.truncate(self.state.rejects_offset)  # rows after the last commit come again
            handle.seek(self.state.rejects_offset)
            return handle
        return self.rejects_path.open("wb")

    async def _chunks(self, handle: BinaryIO) -> AsyncIterator[bytes]:
        while chunk := handle.read(READ_BYTES):  # bytes, so the progress bar counts them exactly
            self.bytes_read += len(chunk)
            yield chunk

    async def _stream(
        self,
        runs: AsyncIterator[list[FileRow]],
        rejects: BinaryIO,
        write: Write,
        batch_size: int,
    ) -> None:
        bar = _progress_bar(self.console)
        records: list[Record] = []
        numbers: list[int] = []
        with bar:
            total, done = self.state.file_size, self.bytes_read  # rows/s and ETA: this run's
            task = bar.add_task(self.file.name, total=total, completed=done, rows=0)
            async for run in runs:
                for record, problems, data in run:
                    self.row += 1
                    self.this_run += 1
                    if record is None:
                        self._reject(rejects, problems, data)
                    else:
                        records.append(record)
                        numbers.append(self.row)
                    if len(records) >= batch_size:
                        self._commit(await write(records, numbers), len(records), rejects)
                        records, numbers = [], []
                bar.update(task, completed=self.bytes_read, rows=self.this_run)
            if records:
                self._commit(await write(records, numbers), len(records), rejects)
            bar.update(task, completed=self.bytes_read, rows=self.this_run)
        self.state.rows_rejected = self.rejected

    def _reject(
        self, rejects: BinaryIO, problems: Sequence[tuple[str | None, str]], data: Any
    ) -> None:
        self.rejected += 1
        self.problems += len(problems)
        for field, message in problems:
            line = {"row": self.row, "field": field, "message": message, "data": data}
            rejects.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            if len(self.shown) < SHOWN_PROBLEMS:
                self.shown.append(f"row {self.row}{f', field {field}' if field else ''}: {message}")

    def _commit(self, written: int, committed: int, rejects: BinaryIO) -> None:
        """After a batch's unit of work: the state file says how far the import got."""
        rejects.flush()
        state = self.state
        state.rows_written += written
        state.rows_committed += committed
        state.rows_rejected, state.rejects_offset = self.rejected, rejects.tell()
        temporary = self.state_path.with_name(self.state_path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
        temporary.replace(self.state_path)  # atomic: never a half-written state

    def report(self) -> None:
        state, seconds = self.state, time.monotonic() - self.started
        for line in self.shown:
            typer.echo(line)
        if self.problems > len(self.shown):
            typer.echo(f"... {self.problems - len(self.shown):,} more in {self.rejects_path}")
        unwritten = state.rows_committed - state.rows_written
        typer.echo(
            f"imported {_rows(state.rows_written)} into {state.dataset} in {seconds:.1f} s "
            f"({self.this_run / max(seconds, 1e-6):,.0f} rows/s); {state.rows_rejected:,} rejected"
            + (f"; {_rows(unwritten)} not written (duplicate keys)" if unwritten > 0 else "")
        )
        if state.rows_rejected:
            raise fail(
                f"{_rows(state.rows_rejected)} rejected (not imported): see {self.rejects_path}"
            )
