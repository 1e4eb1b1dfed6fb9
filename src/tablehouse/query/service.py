"""Query rules: check the statement, find the caller's tables, run it within the limits,
and log every query, whatever became of it.

The only module the router calls. The machinery it puts together lives in sub-packages only
this module imports: ``guard`` (which SQL may run), ``backends`` (running it on each
database) and ``answers`` (the rows as JSON, CSV or NDJSON); its SQL is in ``repository``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from anyio import CapacityLimiter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tablehouse.auth.principal import Principal
from tablehouse.config import Settings
from tablehouse.core.database import Backend, ReadSession, backend_of
from tablehouse.core.events import EventSink
from tablehouse.core.limits import ConcurrencyLimit
from tablehouse.core.query_roles import QueryRoleMissing
from tablehouse.errors import BadRequest, InvalidInput, Location, NotFound, TablehouseError
from tablehouse.query import guard, repository
from tablehouse.query.answers import results
from tablehouse.query.backends.execution import Executor, Statement, open_cursor
from tablehouse.query.backends.postgres import PostgresExecutor
from tablehouse.query.backends.sqlite import SqliteExecutor
from tablehouse.query.events import QuerySource, logged
from tablehouse.query.schemas import QueryRequest

__all__ = [
    "Limits",
    "QueryTarget",
    "StreamFormat",
    "answer",
    "check_query_role",
    "check_role_creation",
    "check_threads",
    "plan",
    "statement_cache",
    "stream",
    "target_for",
]

# Made once per process, kept on the Runtime (or by ``tablehouse query``).
statement_cache = guard.statement_cache
check_threads = guard.check_threads

StreamFormat = Literal["csv", "ndjson"]


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_ms: int
    max_rows: int
    max_bytes: int
    max_sql_length: int


@dataclass(frozen=True, slots=True)
class QueryTarget:
    """Where and how statements run: made by ``target_for``, once at the server's start-up
    (``dependencies.target_of``, one per runtime) or by ``tablehouse query``."""

    engine: AsyncEngine
    backend: Backend
    executor: Executor
    limits: Limits
    slots: ConcurrencyLimit
    events: EventSink
    checker: guard.Checker
    # The request's own read connection may run the statement (no replica): one connection
    # per query instead of two, so concurrent queries cannot starve the pool.
    on_session_connection: bool = False
    source: QuerySource = "api"  # what the query log says it was sent from


def target_for(
    settings: Settings,
    engine: AsyncEngine,
    backend: Backend,
    *,
    slots: ConcurrencyLimit,
    events: EventSink,
    statements: guard.StatementCache,
    check_threads: CapacityLimiter,
    source: QuerySource = "api",
) -> QueryTarget:
    """The one place a target is made. ``engine`` runs users' SQL: a replica's when
    DATABASE_READ_URL is set, otherwise the reads engine, and then the request's own read
    connection runs the statement; ``backend`` is its database."""
    executor: Executor
    if backend == Backend.POSTGRESQL:
        executor = PostgresExecutor(settings.query_database_role)
    else:
        executor = SqliteExecutor(max_value_bytes=settings.query_max_value_bytes)
    return QueryTarget(
        engine=engine,
        backend=backend,
        executor=executor,
        limits=Limits(
            timeout_ms=settings.query_timeout_ms,
            max_rows=settings.query_max_rows,
            max_bytes=settings.query_max_result_bytes,
            max_sql_length=settings.query_max_sql_length,
        ),
        slots=slots,
        events=events,
        checker=guard.Checker(
            statements,
            check_threads,
            guard.Budget(
                max_tokens=settings.query_max_sql_tokens, cpu_ms=settings.query_check_timeout_ms
            ),
        ),
        on_session_connection=not settings.database_read_url,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    statement: Statement
    max_rows: int
    timeout_ms: int


async def plan(
    session: ReadSession, *, caller: Principal, request: QueryRequest, target: QueryTarget
) -> Plan:
    """The statement checked (off the event loop, within the budget) and rendered for the
    caller's datasets. The caller holds a query slot: checks count against it too."""
    limits = target.limits
    _check_limits(request, limits)
    analysis = await target.checker.analysed(request.sql, target.backend)
    _check_parameters(analysis.parameters, request.params)
    sources = await _datasets(session, caller, analysis.tables)
    # Rendering maps each name as written; the cache key carries the resolved datasets,
    # which also pins the user.
    written = tuple(
        repository.Source(name, source.schema_id, source.version, source.table_name, source.fields)
        for name, source in sorted(sources.items())
    )
    physical = {source.name: source.table_name for source in written}
    fields = {source.name: source.fields for source in written}
    rendering = await target.checker.rendered(
        request.sql, analysis, target.backend, physical, written, fields
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


async def _datasets(
    session: ReadSession, caller: Principal, names: frozenset[str]
) -> dict[str, repository.Source]:
    """Each name as written → the caller's dataset. A name matches exactly, or else ignoring
    case when only one dataset fits (SQL folds unquoted names). Unknown or out-of-reach names
    are 404, all named at once."""
    if not names:
        return {}
    found = await repository.datasets_named(session, caller.user.id, names)
    sources: dict[str, repository.Source] = {}
    missing: list[str] = []
    for written in sorted(names):
        candidates = [source for source in found if source.name == written] or [
            source for source in found if source.name.lower() == written.lower()
        ]
        if len(candidates) != 1 or not caller.may_use_dataset(candidates[0].name):
            missing.append(written)
            continue
        sources[written] = candidates[0]
    if missing:
        listed = ", ".join(f"'{name}'" for name in missing)
        raise NotFound(
            f"no dataset named {listed}; a query may read only your own datasets, "
            "by the names you gave them",
            code="schema_not_found",
        )
    return sources


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
    session: ReadSession, *, caller: Principal, request: QueryRequest, target: QueryTarget
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
                target.executor,
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
    session: ReadSession,
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
                    target.executor,
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
async def _connection(session: ReadSession, target: QueryTarget) -> AsyncIterator[AsyncConnection]:
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


async def check_query_role(engine: AsyncEngine, role: str) -> None:
    """Refuse to start without query roles that are safe to switch to: the shared one exists
    and this login may SET ROLE to it, and no query role is a member of another role (so
    none inherits anything). ``engine`` runs users' SQL (the replica's, if there is one)."""
    if backend_of(engine) != Backend.POSTGRESQL:
        return
    state = await repository.query_role_state(engine, role)
    if not state.present or not state.usable:
        raise QueryRoleMissing(
            f"the PostgreSQL role '{role}' (QUERY_DATABASE_ROLE), which users' SQL runs as, "
            "is missing or not granted to this login: run 'tablehouse db upgrade'"
        )
    if state.inherits:
        raise QueryRoleMissing(
            f"the PostgreSQL role '{role}' or an owner's role ({role}_...) is a member of "
            f"another role and would inherit its rights; revoke that membership (\\du {role}*)"
        )


async def check_role_creation(engine: AsyncEngine) -> None:
    """Refuse to start when ``engine``'s login (the one that creates datasets) may not
    create the role of an owner's first dataset."""
    if backend_of(engine) != Backend.POSTGRESQL:
        return
    if not await repository.login_creates_roles(engine):
        raise QueryRoleMissing(
            "this PostgreSQL login may not create roles, which each owner's first dataset "
            "needs (its queries run as a role of its own): grant it CREATEROLE"
        )
