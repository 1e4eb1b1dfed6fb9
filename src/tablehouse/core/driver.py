"""Fixed statements every request runs, sent through the driver itself.

Tablehouse talks to its database through SQLAlchemy, with one deliberate exception: the few
statements that every request runs and that never change (who the caller is, which datasets
a query names) go straight to the driver connection under the request's unit of work. Through
SQLAlchemy's async layer each statement costs ~170-260 µs of client CPU (a greenlet, the
execution context, result metadata); through the driver ~30 µs. Nothing else is done this
way: a statement that is built per request, writes, or loads ORM objects stays on SQLAlchemy.

A ``FixedStatement`` is still a Core statement, written in its repository like any other and
compiled once per backend; its values go in and come out through the columns' own SQLAlchemy
types (their bind and result processors), so a repository gets exactly what Core would give
it: UUIDs, aware datetimes, decoded JSON. On PostgreSQL it runs as an asyncpg prepared
statement kept on the connection (one round trip, no parse); on SQLite in one call onto
aiosqlite's thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import PoolProxiedConnection

from tablehouse.core.database import Backend, ReadSession
from tablehouse.errors import DatabaseUnavailable

# Prepared statements kept per connection for statements that vary (users' SQL): the least
# recently used is dropped past this many. Fixed statements are few and always kept.
PREPARED_PER_CONNECTION = 200
_VARYING = "tablehouse.driver.prepared"
_FIXED = "tablehouse.driver.fixed"
_HELD = "tablehouse.driver.held"

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    parameters: tuple[str, ...]  # names, in the order the SQL numbers them
    binds: tuple[Processor, ...]
    results: tuple[Processor, ...]


class FixedStatement:
    """A Core SELECT (one per backend where their SQL differs) compiled once per backend to
    the driver's own SQL, with the bind and result processors of its types."""

    def __init__(self, statement: Select[Any] | Mapping[Backend, Select[Any]]) -> None:
        self._statements = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self._for(dialect), dialect)
        return found

    def _for(self, dialect: Dialect) -> Select[Any]:
        if isinstance(self._statements, Select):
            return self._statements
        return self._statements[Backend(dialect.name)]


def _compile(statement: Select[Any], dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    return _Compiled(
        sql=compiled.string,
        parameters=names,
        binds=tuple(compiled.binds[name].type._cached_bind_processor(dialect) for name in names),
        results=tuple(
            column.type._cached_result_processor(dialect, None)
            for column in statement.selected_columns
        ),
    )


async def fetch(
    session: ReadSession, statement: FixedStatement, parameters: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Every row of ``statement`` on the session's connection (in its transaction, if it
    has one), as plain values of the columns' types."""
    connection, fairy = await _held(session)
    compiled = statement.compiled(connection.dialect)
    arguments = [
        value if bind is None else bind(value)
        for bind, value in zip(
            compiled.binds, (parameters[name] for name in compiled.parameters), strict=True
        )
    ]
    rows = await _driver_rows(connection, fairy, statement, compiled, arguments)
    processors = compiled.results
    return [
        tuple(
            value if process is None else process(value)
            for process, value in zip(processors, row, strict=True)
        )
        for row in rows
    ]


async def _held(session: ReadSession) -> tuple[AsyncConnection, PoolProxiedConnection]:
    """The session's connection and its pooled DBAPI connection. Asking SQLAlchemy for them
    costs a greenlet hop each (~20 µs); they are kept in the session's ``info`` for as long
    as the transaction that holds them, so a request's second lookup asks no more."""
    transaction = session.sync_session.get_transaction()
    held = session.info.get(_HELD)
    if held is not None and transaction is not None and held[0] is transaction:
        return held[1], held[2]
    connection = await session.connection()
    fairy = await connection.get_raw_connection()
    session.info[_HELD] = (session.sync_session.get_transaction(), connection, fairy)
    return connection, fairy


async def _driver_rows(
    connection: AsyncConnection,
    fairy: PoolProxiedConnection,
    key: Hashable,
    compiled: _Compiled,
    arguments: list[Any],
) -> Sequence[Sequence[Any]]:
    raw: Any = fairy.driver_connection
    if Backend(connection.dialect.name) is Backend.SQLITE:
        return list(await raw.execute_fetchall(compiled.sql, arguments))
    try:
        fixed: dict[Hashable, Any] = fairy.info.setdefault(_FIXED, {})
        prepared = fixed.get(key)
        if prepared is None:
            prepared = fixed[key] = await raw.prepare(compiled.sql)
        return await prepared.fetch(*arguments)  # type: ignore[no-any-return]
    except Exception as error:
        if not connection_lost(error):
            raise
        await connection.invalidate()
        raise DatabaseUnavailable("the database is not answering; retry shortly") from error


def connection_lost(error: BaseException) -> bool:
    """The connection or the server went away (class 08, or shutting down: 57P01..57P03)."""
    if isinstance(error, ConnectionError | asyncpg.InterfaceError):
        return True
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    return sqlstate.startswith("08") or sqlstate in {"57P01", "57P02", "57P03"}


async def prepared(raw: Any, info: dict[Any, Any], key: Hashable, sql: str, wait: float) -> Any:
    """The asyncpg connection ``raw``'s prepared statement for ``key``, prepared from
    ``sql`` on first use and kept in ``info`` (the pooled connection's own dict) among the
    most recently used: a repeated statement skips its parse round trip."""
    cache: OrderedDict[Hashable, Any] = info.setdefault(_VARYING, OrderedDict())
    found = cache.get(key)
    if found is None:
        found = cache[key] = await raw.prepare(sql, timeout=wait)
        if len(cache) > PREPARED_PER_CONNECTION:
            cache.popitem(last=False)  # asyncpg deallocates it on the server once collected
    else:
        cache.move_to_end(key)
    return found
