"""Layer 2: run a checked statement in a read-only transaction with a time limit, on a
connection of the query engine, and always end in ROLLBACK.

Each backend's ``Executor`` (``postgres``, ``sqlite``) opens a ``Cursor``; this module owns
the connection, the deadline and the guarantee that the connection goes back to the pool
clean, or is thrown away.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tablehouse.errors import BadRequest, TablehouseError
from tablehouse.query.guard.stored_types import OutputTypes

log = structlog.get_logger(__name__)

Row = Sequence[Any]

# The first fetch of a result asks for at most this many rows (answers.results grows the
# batches after it): a point query or a small aggregate takes one fetch, and a backend may
# fetch them with the statement.
FIRST_BATCH_ROWS = 16


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str  # rendered for the backend, dataset names replaced by their tables
    parameters: tuple[str, ...]  # named parameters, in the order PostgreSQL numbers them
    values: Mapping[str, Any]
    # Physical table → the name the caller wrote, so messages never show internal names.
    tables: Mapping[str, str]
    # What the rendering depended on besides the text (the datasets' ids and versions):
    # prepared statements are reused only while it holds.
    identity: Hashable = ()
    # Whose datasets it reads; None when it reads none. PostgreSQL runs it as that owner's
    # role, which may read that owner's tables only.
    owner_id: uuid.UUID | None = None
    # Names of the statement's common table expressions, lower case (see sqlite.authorizer).
    ctes: frozenset[str] = frozenset()
    # Which output columns hold a dataset's dates and date-times, where the backend must be
    # told (SQLite, which stores them as text); None elsewhere.
    output: OutputTypes | None = None


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str | None  # None: the backend cannot say before seeing values (SQLite)


class Deadline:
    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.at = time.monotonic() + timeout_ms / 1000

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)


class Cursor(Protocol):
    columns: list[Column]

    async def fetch(self, count: int) -> list[Row]:
        """Up to ``count`` more rows; fewer means the result is exhausted."""
        ...

    async def rows_read(self) -> int | None:
        """Rows the engine read from tables so far, if it can tell."""
        ...


class Executor(Protocol):
    """Runs checked statements on one backend's driver connection."""

    async def open(
        self,
        raw: Any,
        statement: Statement,
        deadline: Deadline,
        memo: dict[Any, Any],
        *,
        max_rows: int | None = None,
    ) -> Cursor:
        """Begin and start the statement. ``memo`` lives as long as the connection;
        ``max_rows``, when known, is the most rows the caller will fetch. The caller's first
        fetch asks for ``min(max_rows, FIRST_BATCH_ROWS)`` rows."""
        ...

    async def close(self, raw: Any, memo: dict[Any, Any]) -> bool:
        """End what ``open`` began; False if the connection cannot be trusted any more."""
        ...

    def translate(
        self, error: BaseException, statement: Statement, deadline: Deadline
    ) -> TablehouseError | None:
        """What ``error`` means for the caller (their mistake, or a database that cannot
        answer now), or None for a bug."""
        ...


def query_timeout(deadline: Deadline) -> BadRequest:
    return BadRequest(
        f"the query ran longer than {deadline.timeout_ms} ms and was stopped",
        code="query_timeout",
    )


def readable(message: str, statement: Statement) -> str:
    """A database message with internal table names replaced by the caller's names."""
    text = message.strip().splitlines()[0] if message.strip() else "the query failed"
    for table, name in statement.tables.items():
        text = text.replace(table, name)
    return text


@asynccontextmanager
async def open_cursor(
    connection: AsyncConnection,
    executor: Executor,
    statement: Statement,
    *,
    timeout_ms: int,
    max_rows: int | None = None,
) -> AsyncIterator[Cursor]:
    """A cursor over ``statement``'s result, valid inside the block, on ``connection`` (which
    must not be in a transaction). Database errors the caller caused become 400s; the
    transaction is rolled back however the block ends, or the connection is discarded."""
    fairy = await connection.get_raw_connection()
    raw = fairy.driver_connection
    clean = False
    try:
        deadline = Deadline(timeout_ms)
        try:
            cursor = await executor.open(raw, statement, deadline, fairy.info, max_rows=max_rows)
            yield _Checked(cursor, executor, statement, deadline)
        except TablehouseError:
            raise
        except Exception as exc:
            problem = executor.translate(exc, statement, deadline)
            if problem is None:
                raise
            raise problem from None
    finally:
        try:
            clean = await executor.close(raw, fairy.info)
        except Exception as exc:  # the connection is broken; it must not be reused
            log.warning("query.connection_discarded", error=type(exc).__name__)
        if not clean:
            await connection.invalidate()


class _Checked:
    """Enforces the deadline between fetches and translates errors raised while fetching."""

    def __init__(
        self, cursor: Cursor, executor: Executor, statement: Statement, deadline: Deadline
    ) -> None:
        self.columns = cursor.columns
        self._cursor = cursor
        self._executor = executor
        self._statement = statement
        self._deadline = deadline

    async def fetch(self, count: int) -> list[Row]:
        if self._deadline.passed():
            raise query_timeout(self._deadline)
        try:
            return await self._cursor.fetch(count)
        except Exception as exc:
            problem = self._executor.translate(exc, self._statement, self._deadline)
            if problem is None:
                raise
            raise problem from None

    async def rows_read(self) -> int | None:
        return await self._cursor.rows_read()
