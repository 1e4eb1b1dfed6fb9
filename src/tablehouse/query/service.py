"""Query rules: check the statement, find the caller's tables, run it within the limits,
and log every query, whatever became of it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from anyio import CapacityLimiter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from tablehouse.auth.principal import Principal
from tablehouse.config import Settings
from tablehouse.core.events import EventSink
from tablehouse.core.limits import ConcurrencyLimit
from tablehouse.errors import BadRequest, InvalidInput, Location, TablehouseError
from tablehouse.query import catalog, guard, results
from tablehouse.query.events import QuerySource
from tablehouse.query.execution import Backend, Statement, open_cursor
from tablehouse.query.postgres import PostgresBackend
from tablehouse.query.schemas import QueryRequest
from tablehouse.query.sqlite import SqliteBackend
from tablehouse.query.statements import Checker, StatementCache
from tablehouse.query.tracking import logged

StreamFormat = Literal["csv", "ndjson"]


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_ms: int
    max_rows: int
    max_bytes: int
    max_sql_length: int


@dataclass(frozen=True, slots=True)
class QueryTarget:
    """Where and how statements run, built from the runtime by the router."""

    engine: AsyncEngine
    backend: Backend
    dialect: guard.Backend
    limits: Limits
    slots: ConcurrencyLimit
    events: EventSink
    checker: Checker
    # The request's own read connection may run the statement (no replica): one connection
    # per query instead of two, so concurrent queries cannot starve the pool.
    on_session_connection: bool = False
    source: QuerySource = "api"  # what the query log says it was sent from


def target_for(
    settings: Settings,
    engine: AsyncEngine,
    *,
    slots: ConcurrencyLimit,
    events: EventSink,
    statement_cache: StatementCache,
    check_threads: CapacityLimiter,
    on_session_connection: bool = False,
    source: QuerySource = "api",
) -> QueryTarget:
    backend: Backend
    dialect: guard.Backend
    if engine.dialect.name == "postgresql":
        backend, dialect = PostgresBackend(settings.query_database_role), "postgresql"
    else:
        backend = SqliteBackend(max_value_bytes=settings.query_max_value_bytes)
        dialect = "sqlite"
    return QueryTarget(
        engine=engine,
        backend=backend,
        dialect=dialect,
        limits=Limits(
            timeout_ms=settings.query_timeout_ms,
            max_rows=settings.query_max_rows,
            max_bytes=settings.query_max_result_bytes,
            max_sql_length=settings.query_max_sql_length,
        ),
        slots=slots,
        events=events,
        checker=Checker(
            statement_cache,
            check_threads,
            guard.Budget(
                max_tokens=settings.query_max_sql_tokens, cpu_ms=settings.query_check_timeout_ms
            ),
        ),
        on_session_connection=on_session_connection,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    statement: Statement
    max_rows: int
    timeout_ms: int


async def plan(
    session: AsyncSession, *, caller: Principal, request: QueryRequest, target: QueryTarget
) -> Plan:
    """The statement checked (off the event loop, within the budget) and rendered for the
    caller's datasets. The caller holds a query slot: checks count against it too."""
    limits = target.limits
    _check_limits(request, limits)
    analysis = await target.checker.analysed(request.sql, target.dialect)
    _check_parameters(analysis.parameters, request.params)
    sources = await catalog.resolve(session, caller, analysis.tables)
    # Rendering maps each name as written; the cache key carries the resolved datasets,
    # which also pins the user.
    written = tuple(
        catalog.Source(name, source.schema_id, source.version, source.table_name, source.fields)
        for name, source in sorted(sources.items())
    )
    physical = {source.name: source.table_name for source in written}
    fields = {source.name: source.fields for source in written}
    rendering = await target.checker.rendered(
        request.sql, analysis, target.dialect, physical, written, fields
    )
    statement = Statement(
        sql=rendering.sql,
        output=rendering.output,
        parameters=analysis.parameters,
        values=request.params,
        tables={source.table_name: source.name for source in sources.values()},
        identity=written,
        owner_id=caller.user.id if sources else None,
        ctes=analysis.ctes,
    )
    return Plan(
        statement=statement,
        max_rows=request.limit or limits.max_rows,
        timeout_ms=request.timeout_ms or limits.timeout_ms,
    )


def _check_limits(request: QueryRequest, limits: Limits) -> None:
    problems: list[tuple[Location, str, str]] = []
    if len(request.sql) > limits.max_sql_length:
        problems.append(
            (
                ("body", "sql"),
                f"at most {limits.max_sql_length} characters (QUERY_MAX_SQL_LENGTH)",
                "string_too_long",
            )
        )
    if request.limit is not None and request.limit > limits.max_rows:
        problems.append(
            (("body", "limit"), f"at most {limits.max_rows} (QUERY_MAX_ROWS)", "less_than_equal")
        )
    if request.timeout_ms is not None and request.timeout_ms > limits.timeout_ms:
        problems.append(
            (
                ("body", "timeout_ms"),
                f"at most {limits.timeout_ms} (QUERY_TIMEOUT_MS); a query may only shorten it",
                "less_than_equal",
            )
        )
    if problems:
        raise InvalidInput.of(problems)


def _check_parameters(expected: tuple[str, ...], given: Mapping[str, object]) -> None:
    missing = [name for name in expected if name not in given]
    unknown = sorted(set(given) - set(expected))
    if missing:
        raise BadRequest(
            "no value given for "
            + ", ".join(f":{name}" for name in missing)
            + "; send them in 'params'",
            code="missing_parameter",
        )
    if unknown:
        raise BadRequest(
            "the statement has no parameter " + ", ".join(f":{name}" for name in unknown),
            code="unknown_parameter",
        )


async def answer(
    session: AsyncSession, *, caller: Principal, request: QueryRequest, target: QueryTarget
) -> bytes:
    """The whole result as one JSON document (QueryResult)."""
    query_id = uuid.uuid4()
    with (
        logged(target.events, caller, request.sql, query_id, source=target.source) as outcome,
        target.slots.slot(caller.user.id),
    ):
        planned = await plan(session, caller=caller, request=request, target=target)
        outcome.executing()
        async with (
            _connection(session, target) as connection,
            open_cursor(
                connection,
                target.backend,
                planned.statement,
                timeout_ms=planned.timeout_ms,
                max_rows=planned.max_rows + 1,
            ) as cursor,
        ):
            collected = await results.collect(
                cursor, max_rows=planned.max_rows, max_bytes=target.limits.max_bytes
            )
            outcome.measured()
            rows_read = await cursor.rows_read()
        outcome.rows_read = collected.row_count if rows_read is None else rows_read
        outcome.bytes_read = collected.size
        return results.json_document(
            query_id=str(query_id),
            columns=results.column_types(cursor.columns, collected.samples),
            collected=collected,
            execution_time_ms=outcome.execution_time_ms,
            rows_read=outcome.rows_read,
        )


async def stream(
    session: AsyncSession,
    *,
    caller: Principal,
    request: QueryRequest,
    target: QueryTarget,
    form: StreamFormat,
) -> tuple[uuid.UUID, AsyncIterator[bytes]]:
    """The result as CSV or NDJSON chunks. Everything that can be refused is refused before
    this returns: the statement is checked, planned and started, and its first chunk made."""
    query_id = uuid.uuid4()
    with ExitStack() as held:
        held.enter_context(target.slots.slot(caller.user.id))
        with logged(
            target.events, caller, request.sql, query_id, failures_only=True, source=target.source
        ):
            planned = await plan(session, caller=caller, request=request, target=target)
        # From here the stream holds the slot, and gives it back however it ends.
        chunks = _streamed(caller, request, target, planned, query_id, form, held.pop_all())
    first = await anext(chunks, b"")
    return query_id, _prepend(first, chunks)


async def _streamed(
    caller: Principal,
    request: QueryRequest,
    target: QueryTarget,
    planned: Plan,
    query_id: uuid.UUID,
    form: StreamFormat,
    slot: AbstractContextManager[object],
) -> AsyncIterator[bytes]:
    encoder = results.csv_stream if form == "csv" else results.ndjson_stream
    sent = results.Sent()
    started_sending = False
    with (
        slot,
        logged(target.events, caller, request.sql, query_id, source=target.source) as outcome,
    ):
        outcome.executing()
        try:
            async with (
                target.engine.connect() as connection,
                open_cursor(
                    connection,
                    target.backend,
                    planned.statement,
                    timeout_ms=planned.timeout_ms,
                ) as cursor,
            ):
                async for chunk in encoder(cursor, max_rows=planned.max_rows, sent=sent):
                    started_sending = True
                    yield chunk
                outcome.measured()
                rows_read = await cursor.rows_read()
            outcome.rows_read = sent.rows if rows_read is None else rows_read
        except TablehouseError as exc:
            if not started_sending:
                raise  # still time for a proper error response
            # The status line has gone: the stream ends early, and the log says why.
            outcome.failed(exc)
            outcome.rows_read = sent.rows
        finally:
            outcome.bytes_read = sent.size
            if not outcome.execution_time_ms:
                outcome.measured()


@asynccontextmanager
async def _connection(session: AsyncSession, target: QueryTarget) -> AsyncIterator[AsyncConnection]:
    if target.on_session_connection:
        yield await session.connection()
        return
    async with target.engine.connect() as connection:
        yield connection


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
