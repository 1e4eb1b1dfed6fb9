"""Running a statement on PostgreSQL: a READ ONLY transaction, as its owner's query role
(``core.query_roles``), under ``statement_timeout``, through a server-side portal so only
the rows asked for travel.

Round trips per statement: the transaction's ``BEGIN READ ONLY; SET LOCAL ...`` (one simple
query), the statement's first rows (the portal is bound and executed in one trip, its
prepared statement kept on the connection), more rows if the caller asks for them, the rows
read, and ``ROLLBACK``."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from asyncpg.cursor import Cursor as AsyncpgCursor

from tablehouse.core import driver, query_roles
from tablehouse.errors import BadRequest, DatabaseUnavailable, QueryRefused, TablehouseError
from tablehouse.query.backends.execution import (
    Column,
    Deadline,
    Row,
    Statement,
    query_timeout,
    readable,
)

# The server's statement_timeout should fire first; this is the backstop if it cannot.
CLIENT_GRACE_SECONDS = 0.5

TYPE_NAMES = {
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "float4": "float",
    "float8": "float",
    "numeric": "number",
    "text": "string",
    "varchar": "string",
    "bpchar": "string",
    "name": "string",
    "bool": "boolean",
    "timestamptz": "datetime",
    "timestamp": "datetime",
    "date": "date",
    "time": "time",
    "timetz": "time",
    "json": "json",
    "jsonb": "json",
    "uuid": "uuid",
    "bytea": "bytes",
    "interval": "interval",
}

_ROWS_READ = """
SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::bigint
FROM pg_stat_xact_user_tables WHERE relname = ANY($1::text[])
"""


def _to_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not a whole number")
    return int(value)


def _to_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("not true or false")


def _to_datetime(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


# How a JSON value becomes what asyncpg needs for each parameter type; a type not listed
# gets the value as it is, and asyncpg says if it does not fit.
CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int2": _to_int,
    "int4": _to_int,
    "int8": _to_int,
    "float4": float,
    "float8": float,
    "numeric": lambda value: decimal.Decimal(str(value)),
    "text": _to_text,
    "varchar": _to_text,
    "bpchar": _to_text,
    "name": _to_text,
    "unknown": _to_text,
    "bool": _to_bool,
    "timestamptz": _to_datetime,
    "timestamp": _to_datetime,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": lambda value: uuid.UUID(str(value)),
    "json": lambda value: value if isinstance(value, str) else str(value).lower(),
    "jsonb": lambda value: value if isinstance(value, str) else str(value).lower(),
}


class PostgresCursor:
    """Rows read from a portal, as many as each ``fetch`` asks for: the caller sizes its
    batches, so a result of large rows is never fetched far past what it needs. The portal
    is bound by the first ``fetch``, in the same round trip as its first rows."""

    def __init__(
        self,
        raw: asyncpg.Connection,
        prepared: Any,
        arguments: list[Any],
        tables: list[str],
        deadline: Deadline,
    ) -> None:
        self.columns = [
            Column(attribute.name, TYPE_NAMES.get(attribute.type.name, attribute.type.name))
            for attribute in prepared.get_attributes()
        ]
        self._raw = raw
        self._tables = tables
        self._portal = _portal(raw, prepared, arguments)
        self._bound = False
        self._deadline = deadline

    async def fetch(self, count: int) -> list[Row]:
        if self._portal._exhausted:
            return []
        wait = self._deadline.remaining() + CLIENT_GRACE_SECONDS
        # asyncpg's public cursor binds in a round trip of its own; its iterator binds and
        # executes together but in batches of one fixed size: these two are what they call.
        if self._bound:
            return await self._portal._exec(count, wait)  # type: ignore[no-any-return]
        self._bound = True
        return await self._portal._bind_exec(count, wait)  # type: ignore[no-any-return]

    async def rows_read(self) -> int | None:
        if not self._tables:
            return 0  # it reads none of the owner's tables: no round trip to be told so
        return int(await self._raw.fetchval(_ROWS_READ, self._tables))


def _portal(raw: asyncpg.Connection, prepared: Any, arguments: list[Any]) -> AsyncpgCursor:
    """An unbound asyncpg cursor over ``prepared``, holding the statement as its own
    ``Cursor._init`` does (it lets go when collected)."""
    state = prepared._state
    portal = AsyncpgCursor(raw, prepared.get_query(), state, arguments, state.record_class)
    state.attach()
    return portal


class PostgresExecutor:
    def __init__(self, role: str) -> None:
        self._role = role  # QUERY_DATABASE_ROLE

    def role_of(self, statement: Statement) -> str:
        """The owner's role for a statement over datasets, the shared role otherwise."""
        if statement.owner_id is None:
            return self._role
        return query_roles.owner_role(self._role, statement.owner_id)

    async def open(
        self,
        raw: Any,
        statement: Statement,
        deadline: Deadline,
        memo: dict[Any, Any],
        *,
        max_rows: int | None = None,
    ) -> PostgresCursor:
        """With ``max_rows`` the statement is wrapped in a LIMIT, so the planner knows how
        few rows are wanted. Rows are read through a portal (a server-side cursor) as the
        caller asks for them, the first of them in the trip that binds it."""
        timeout = deadline.remaining() + CLIENT_GRACE_SECONDS
        await self._begin(raw, statement, deadline)
        sql = statement.sql
        if max_rows is not None:
            sql = f"SELECT * FROM ({sql}) AS result LIMIT ${len(statement.parameters) + 1}"
        prepared = await driver.prepared(raw, memo, (sql, statement.identity), sql, timeout)
        arguments = _arguments(prepared.get_parameters(), statement)
        if max_rows is not None:
            arguments.append(max_rows)
        return PostgresCursor(raw, prepared, arguments, list(statement.tables), deadline)

    async def _begin(self, raw: Any, statement: Statement, deadline: Deadline) -> None:
        """One round trip, whichever role: switching roles costs nothing extra."""
        role = self.role_of(statement)
        try:
            await raw.execute(
                f'BEGIN READ ONLY; SET LOCAL ROLE "{role}"; '
                f"SET LOCAL statement_timeout = {deadline.timeout_ms}",
                timeout=deadline.remaining() + CLIENT_GRACE_SECONDS,
            )
        except (asyncpg.InvalidParameterValueError, asyncpg.InsufficientPrivilegeError):
            # The role does not exist, or this login may not switch to it.
            raise query_roles.QueryRoleMissing(
                "your queries cannot run now: the database role they run as is missing or "
                "not granted to this login; an administrator must run 'tablehouse db roles'"
            ) from None

    async def close(self, raw: Any, memo: dict[Any, Any]) -> bool:
        if raw.is_closed():
            return False
        if raw.is_in_transaction():
            await raw.execute("ROLLBACK", timeout=5)
        return True

    def translate(
        self, error: BaseException, statement: Statement, deadline: Deadline
    ) -> TablehouseError | None:
        if isinstance(error, asyncpg.QueryCanceledError | asyncio.TimeoutError | TimeoutError):
            return query_timeout(deadline)
        if driver.connection_lost(error):
            return DatabaseUnavailable("the database is not answering; retry shortly")
        if isinstance(
            error, asyncpg.InsufficientPrivilegeError | asyncpg.ReadOnlySQLTransactionError
        ):
            return QueryRefused(
                f"the database refused this statement: {readable(str(error), statement)}",
                code="not_allowed",
            )
        if isinstance(error, asyncpg.DataError) and str(error).startswith("invalid input for"):
            # Raised by asyncpg itself, before sending: a parameter of the wrong kind.
            return BadRequest(readable(str(error), statement), code="invalid_parameter")
        if isinstance(error, asyncpg.PostgresError):
            return _statement_error(error, statement)
        return _answer_error(error)


# SQLSTATE classes a statement's author causes: data exceptions (22: division by zero, a
# character the encoding lacks, ...), integrity (23), syntax or access rules (42), and a
# few in others (e.g. cardinality 21).
_USERS_MISTAKES = frozenset({"21", "22", "23", "2F", "38", "39", "42", "0A", "P0"})
# Limits the statement ran into: program limits (54: too many columns, an expression too
# deep, an array of more than 6 dimensions, a NUL character), out of memory (53200) or
# temp_file_limit (53400) while running it, a value past PostgreSQL's 1 GB.
_LIMITS = frozenset({"54", "53200", "53400"})
_TOO_BIG = "invalid memory alloc request size"


def _statement_error(error: asyncpg.PostgresError, statement: Statement) -> TablehouseError | None:
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    message = readable(str(error), statement)
    if sqlstate[:2] in _USERS_MISTAKES:
        return BadRequest(message, code="query_failed")
    if sqlstate[:2] in _LIMITS or sqlstate in _LIMITS or message.startswith(_TOO_BIG):
        return BadRequest(
            f"the query went past a limit of the database: {message}",
            code="database_limit_exceeded",
        )
    return None


def _answer_error(error: BaseException) -> TablehouseError | None:
    """Errors turning the database's answer into Python values (asyncpg's JSON decoder)."""
    if isinstance(error, RecursionError):
        return BadRequest(
            "a JSON value in the answer is nested too deeply to be read", code="value_too_deep"
        )
    if isinstance(error, ValueError) and "integer string conversion" in str(error):
        return BadRequest(
            "a JSON value in the answer holds an integer of more than 4,300 digits",
            code="value_too_large",
        )
    return None


def _arguments(types: Any, statement: Statement) -> list[Any]:
    arguments = []
    # A wrapping LIMIT adds a parameter of its own after the statement's.
    for name, pg_type in zip(statement.parameters, types, strict=False):
        value = statement.values[name]
        convert = CONVERTERS.get(pg_type.name)
        if value is None or convert is None:
            arguments.append(value)
            continue
        try:
            arguments.append(convert(value))
        except (TypeError, ValueError, ArithmeticError):
            raise BadRequest(
                f"parameter :{name} must be a {TYPE_NAMES.get(pg_type.name, pg_type.name)} "
                f"here; got {value!r}",
                code="invalid_parameter",
            ) from None
    return arguments
