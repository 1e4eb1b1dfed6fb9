"""Running a statement on SQLite: a deferred (snapshot) transaction on a ``query_only``
connection, an authorizer that lets the statement read only the caller's tables and call
only allowed functions, a progress handler and a timer that stop it at the deadline, and a
length limit on the strings and blobs it builds."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tablehouse.errors import BadRequest, DatabaseUnavailable, QueryRefused, TablehouseError
from tablehouse.query.backends.execution import (
    FIRST_BATCH_ROWS,
    Column,
    Deadline,
    Row,
    Statement,
    query_timeout,
    readable,
)
from tablehouse.query.guard.checks import ascii_lower

# The progress handler runs every this many virtual machine steps (well under a millisecond).
PROGRESS_STEPS = 1000
_RUN = "tablehouse.query.run"
_TIMER = "tablehouse.query.timer"

# SQLite's own names for the functions the guard allows (and for the operators SQLite runs
# as functions: LIKE, GLOB, ->, ->>). The authorizer denies every other function, so a
# statement that slipped past the guard still cannot call load_extension, readfile, etc.
AUTHORIZED_FUNCTIONS = frozenset(
    # A list of words reads better here than a hundred quoted strings.
    """
    count sum total avg min max group_concat string_agg
    row_number rank dense_rank percent_rank cume_dist ntile lag lead
    first_value last_value nth_value
    abs round ceil ceiling floor trunc sign sqrt pow power exp ln log log2 log10 mod pi
    sin cos tan asin acos atan atan2 degrees radians random
    lower upper length octet_length substr substring trim ltrim rtrim replace instr
    concat concat_ws printf format char unicode hex quote unhex
    randomblob zeroblob
    like glob ->> ->
    date time datetime julianday strftime unixepoch timediff
    current_date current_time current_timestamp
    coalesce ifnull nullif iif likely unlikely typeof
    json json_extract json_array json_object json_array_length json_type json_valid
    json_quote json_group_array json_group_object json_each json_tree json_insert
    json_replace json_set json_remove json_patch jsonb jsonb_extract
    """.split()  # noqa: SIM905
)

# Table-valued functions (eponymous virtual tables): SQLite reports reading their columns as
# reading a table of that name. They read only the value they are given.
TABLE_FUNCTIONS = frozenset({"json_each", "json_tree"})
# Builds each of them on the connection before an authorizer is set: their constructor's
# schema declaration would be refused ("vtable constructor failed"), and, built once, they
# last as long as the connection, schema changes included.
_CONSTRUCT_TABLE_FUNCTIONS = "SELECT 1 FROM json_each('[]'), json_tree('[]')"
_CONSTRUCTED = "tablehouse.query.table_functions"

_T = TypeVar("_T")

Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]


def authorizer(
    tables: frozenset[str], functions: frozenset[str], ctes: frozenset[str] = frozenset()
) -> Authorizer:
    """Checks each action while SQLite compiles the statement: anything but reading
    ``tables`` and the allowed table-valued functions, and calling ``functions``, makes
    compilation fail with "not authorized".

    ``ctes`` are the statement's common table expressions (lower case). SQLite reports a
    CTE it materialises, when no column of it is read (``count(*)``), as a read of a table of
    that name with the empty column name; such a read shows no value of any table, and is
    allowed for those names only.
    """
    table_functions = TABLE_FUNCTIONS & functions

    def check(
        action: int, arg1: str | None, arg2: str | None, _db: str | None, _inner: str | None
    ) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and arg1 is not None:
            # SQLite names a table-valued function as the statement spells it.
            name = ascii_lower(arg1)
            if arg1 in tables or name in table_functions or (arg2 == "" and name in ctes):
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and arg2 is not None and arg2.lower() in functions:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return check


# SQLAlchemy's text for a naive UTC date-time (what a datetime field holds on SQLite), and
# SQLite's own (CURRENT_TIMESTAMP, datetime()): no offset, a space or a T.
_STORED_DATETIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d{1,6})?)?")


def stored_datetime(value: Any) -> Any:
    """A stored date-time as a UTC date-time, written like every other (ISO 8601, with its
    offset); anything else (null, a string that is no such text) as it is."""
    if isinstance(value, str) and _STORED_DATETIME.fullmatch(value):
        try:
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        except ValueError:  # the shape of one, but no date (month 13)
            return value
    return value


def _typed_columns(names: list[str], statement: Statement) -> tuple[list[Column], list[int]]:
    """The answer's columns, a dataset's date and date-time columns typed as such (SQLite
    cannot say), and the positions of the date-times, whose stored text is converted."""
    kinds = statement.output.kinds_of(names) if statement.output else [None] * len(names)
    columns = [Column(name, kind) for name, kind in zip(names, kinds, strict=True)]
    return columns, [index for index, kind in enumerate(kinds) if kind == "datetime"]


class _Run:
    """One statement's work on the connection's thread. aiosqlite hands each call to that
    thread and waits for its answer (a hop: ~15 futex calls and two GIL hand-offs), so the
    statement is begun, guarded, run and its first rows fetched in one hop (``start``), and
    ended in the hop that finds the last row, or in one of its own (``end``).

    Every method runs on the connection's thread."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        statement: Statement,
        deadline: Deadline,
        authorize: Authorizer,
        max_value_bytes: int,
    ) -> None:
        self.connection = connection
        self.statement = statement
        self.deadline = deadline
        self.authorize = authorize
        self.max_value_bytes = max_value_bytes
        self.began = False
        self.length_limit: int | None = None
        self.progress = False
        self.cursor: sqlite3.Cursor | None = None
        self.ended = False
        self.failure: Exception | None = None  # why ending failed: the connection goes

    def start(self, construct: bool, first: int) -> tuple[list[str], list[Any]]:
        """Begin (unless the unit of work has), limit length and time, build the table
        functions (``construct``), authorize and run the statement, and fetch up to
        ``first`` rows: the column names and the rows. Fewer rows than ``first`` means the
        result is exhausted, and the run has ended. Whatever fails, the run is ended before
        the error is raised."""
        connection = self.connection
        try:
            # On the request's own connection the read transaction is open already: the
            # query then sees the same snapshot as the catalogue lookup, and the unit of
            # work ends it.
            if not connection.in_transaction:
                connection.execute("BEGIN").close()
                self.began = True
            # Size: SQLite's length limit stops any string or blob, built or read, from
            # passing max_value_bytes.
            self.length_limit = connection.setlimit(
                sqlite3.SQLITE_LIMIT_LENGTH, self.max_value_bytes
            )
            deadline = self.deadline
            connection.set_progress_handler(lambda: 1 if deadline.passed() else 0, PROGRESS_STEPS)
            self.progress = True
            if construct:
                connection.execute(_CONSTRUCT_TABLE_FUNCTIONS).close()
            connection.set_authorizer(self.authorize)
            try:
                self.cursor = connection.execute(self.statement.sql, dict(self.statement.values))
            finally:
                # The authorizer is consulted while compiling only; our own ROLLBACK
                # needs none.
                connection.set_authorizer(None)
            names = [description[0] for description in self.cursor.description or ()]
            rows = self.cursor.fetchmany(first)
        except BaseException:
            self._end_quietly()
            raise
        if len(rows) < first:
            self._end_quietly()
        return names, rows

    def fetch(self, count: int) -> list[Any]:
        """Up to ``count`` more rows; fewer means exhausted, and the run has ended."""
        try:
            assert self.cursor is not None
            rows = self.cursor.fetchmany(count)
        except BaseException:
            self._end_quietly()
            raise
        if len(rows) < count:
            self._end_quietly()
        return rows

    def end(self) -> None:
        """Close the cursor, take the handlers off, restore the length limit (stored rows
        read by the rows API must not meet the query's) and roll back what ``start``
        began. Raises if the connection cannot be trusted any more."""
        self.ended = True
        connection = self.connection
        if self.cursor is not None:
            self.cursor.close()  # a statement left running would block the rollback
            self.cursor = None
        if self.progress:
            connection.set_progress_handler(None, 0)
            self.progress = False
        if self.length_limit is not None:
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.length_limit)
            self.length_limit = None
        if self.began and connection.in_transaction:
            connection.execute("ROLLBACK").close()

    def _end_quietly(self) -> None:
        """``end`` inside another hop: a failure is kept for ``SqliteExecutor.close`` to
        raise, so that the answer (or the statement's own error) still goes out."""
        if self.ended:
            return
        try:
            self.end()
        except Exception as exc:
            self.failure = exc


def _take(rows: list[Any], count: int) -> tuple[list[Any], list[Any]]:
    return rows[:count], rows[count:]


class SqliteCursor:
    """Rows fetched with the statement are handed out first; more are fetched one hop per
    batch until the result is exhausted."""

    def __init__(
        self,
        raw: Any,
        run: _Run,
        columns: list[Column],
        first: list[Any],
        *,
        exhausted: bool,
        datetimes: Sequence[int] = (),
    ) -> None:
        self.columns = columns
        self._raw = raw
        self._run = run
        self._buffered = first
        self._exhausted = exhausted
        self._datetimes = datetimes

    async def fetch(self, count: int) -> list[Row]:
        rows, self._buffered = _take(self._buffered, count)
        if len(rows) < count and not self._exhausted:
            more = await _on_connection_thread(self._raw, self._run.fetch, count - len(rows))
            self._exhausted = len(more) < count - len(rows)
            rows.extend(more)
        if not self._datetimes:
            return rows
        converted: list[Row] = []
        for row in rows:
            values = list(row)
            for index in self._datetimes:
                values[index] = stored_datetime(values[index])
            converted.append(values)
        return converted

    async def rows_read(self) -> int | None:
        return None  # SQLite keeps no per-statement row counters that Python can reach


class SqliteExecutor:
    def __init__(
        self,
        functions: frozenset[str] = AUTHORIZED_FUNCTIONS,
        *,
        max_value_bytes: int = 1_000_000_000,
    ) -> None:
        self._functions = functions
        self._max_value_bytes = max_value_bytes

    async def open(
        self,
        raw: Any,
        statement: Statement,
        deadline: Deadline,
        memo: dict[Any, Any],
        *,
        max_rows: int | None = None,
    ) -> SqliteCursor:
        connection = _sqlite3_connection(raw)
        run = _Run(
            connection,
            statement,
            deadline,
            authorizer(frozenset(statement.tables), self._functions, statement.ctes),
            self._max_value_bytes,
        )
        memo[_RUN] = run
        # Time: the progress handler runs every PROGRESS_STEPS steps, but a few steps can
        # take seconds (a function over megabytes), so a timer interrupts the statement at
        # the deadline as well; SQLite notices it at the next row.
        memo[_TIMER] = asyncio.get_running_loop().call_later(
            deadline.remaining(),
            connection.interrupt,  # thread-safe, as it must be
        )
        # The first fetch the caller makes asks for this many (see execution.FIRST_BATCH_ROWS).
        first = min(max_rows or FIRST_BATCH_ROWS, FIRST_BATCH_ROWS)
        construct = not memo.get(_CONSTRUCTED)
        names, rows = await _on_connection_thread(raw, run.start, construct, first)
        memo[_CONSTRUCTED] = True
        columns, datetimes = _typed_columns(names, statement)
        return SqliteCursor(
            raw, run, columns, rows, exhausted=len(rows) < first, datetimes=datetimes
        )

    async def close(self, raw: Any, memo: dict[Any, Any]) -> bool:
        timer = memo.pop(_TIMER, None)
        if timer is not None:
            timer.cancel()  # before anything else runs on this connection
        run: _Run | None = memo.pop(_RUN, None)
        if run is None:
            return True
        if not run.ended:
            await _on_connection_thread(raw, run.end)
        elif run.failure is not None:
            raise run.failure  # the connection is discarded
        return True

    def translate(
        self, error: BaseException, statement: Statement, deadline: Deadline
    ) -> TablehouseError | None:
        if not isinstance(error, sqlite3.Error):
            return None
        message = str(error)
        if isinstance(error, sqlite3.OperationalError) and message == "interrupted":
            return query_timeout(deadline)
        if "string or blob too big" in message:
            return BadRequest(
                f"a value in this query grew past {self._max_value_bytes} bytes "
                "(QUERY_MAX_VALUE_BYTES)",
                code="value_too_large",
            )
        if any(sign in message for sign in ("not authorized", "prohibited", "readonly database")):
            return QueryRefused(
                f"the database refused this statement: {readable(message, statement)}",
                code="not_allowed",
            )
        if "database is locked" in message or "unable to open" in message:
            return DatabaseUnavailable("the database is not answering; retry shortly")
        if isinstance(error, sqlite3.ProgrammingError) and "binding" in message:
            return BadRequest(readable(message, statement), code="invalid_parameter")
        if isinstance(error, sqlite3.OperationalError | sqlite3.DataError):
            return BadRequest(readable(message, statement), code="query_failed")
        return None


def _sqlite3_connection(raw: Any) -> sqlite3.Connection:
    """The sqlite3 connection under aiosqlite's, for the calls made on its thread and for
    ``interrupt``, which must not wait behind the running statement."""
    connection: sqlite3.Connection = raw._conn
    return connection


async def _on_connection_thread(raw: Any, call: Callable[..., _T], *arguments: Any) -> _T:
    """``call`` run on aiosqlite's thread in one hop: sqlite3 refuses most calls from other
    threads. ``_execute`` is aiosqlite's private way in (as ``execute`` itself uses it); the
    dependency is pinned to >=0.22,<0.23 for it."""
    result: _T = await raw._execute(call, *arguments)
    return result
