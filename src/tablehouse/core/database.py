"""Engines, sessions and the unit of work."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
import structlog
from sqlalchemy import Connection, Engine, event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool, PoolResetState

from tablehouse.config import Settings
from tablehouse.core.pool import FairAsyncQueuePool
from tablehouse.errors import DatabaseUnavailable, TablehouseError

log = structlog.get_logger(__name__)


class Backend(StrEnum):
    """The databases Tablehouse stores in; the one way code tells them apart."""

    POSTGRESQL = "postgresql"
    SQLITE = "sqlite"


class ReadSession(AsyncSession):
    """A unit of work that only reads. The database refuses a write made through it (SQLite:
    ``query_only``; PostgreSQL: ``default_transaction_read_only``), and the type says so:
    a repository function that writes takes a ``WriteSession``, so mypy rejects a write
    reached from a read path."""


class WriteSession(ReadSession):
    """A unit of work that may write, committed once when it ends without an error. It is a
    ``ReadSession`` too: a write path may call what only reads."""


ReadSessionFactory = async_sessionmaker[ReadSession]
WriteSessionFactory = async_sessionmaker[WriteSession]
# Execution option marking connections that only read (see _apply_sqlite_pragmas).
READS_ONLY = "tablehouse_reads_only"
# A pooled connection back in the pool for less than this is handed out without a ping
# (see _ping_when_idle); one idle longer is pinged first.
PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED_AT = "tablehouse_returned_at"
# SQLSTATEs that mean the connection is gone: class 08 (connection exception) and the
# server shutting down or terminating the backend (57P01..57P03).
_CONNECTION_GONE = frozenset({"57P01", "57P02", "57P03"})


def database_url(settings: Settings, *, for_queries: bool = False) -> URL:
    """The one place a database URL is built: the app, Alembic and the CLI all call this.

    ``for_queries`` gives the database that runs users' SQL: ``DATABASE_READ_URL`` (a read
    replica) when set. A relative SQLite path is resolved against the working directory and
    its folder created, so the same file is used whatever directory a later command runs from.
    """
    url = make_url((for_queries and settings.database_read_url) or settings.database_url)
    if url.get_backend_name() != "sqlite":
        return url
    path = Path(url.database or "").expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return url.set(database=str(path))


def backend_of(
    source: AsyncEngine | AsyncConnection | AsyncSession | Engine | Connection,
) -> Backend:
    """Which database ``source`` talks to."""
    if isinstance(source, AsyncSession):
        return Backend(source.get_bind().dialect.name)
    return Backend(source.dialect.name)


def create_engine(settings: Settings) -> AsyncEngine:
    """The application's pooled engine."""
    return _pooled_engine(database_url(settings), settings)


def create_read_engine(settings: Settings, *, replica: bool = False) -> AsyncEngine:
    """The engine for units of work that only read, and for users' SQL.

    On PostgreSQL its connections are in AUTOCOMMIT (a read needs no BEGIN and COMMIT round
    trips, and the query executor opens its own READ ONLY transaction) with
    ``default_transaction_read_only`` on; on SQLite they are ``query_only``: either way the
    database itself refuses any write made through them. ``replica``: on ``DATABASE_READ_URL``
    instead of ``DATABASE_URL``.
    """
    return _pooled_engine(database_url(settings, for_queries=replica), settings, reads=True)


def _pooled_engine(url: URL, settings: Settings, *, reads: bool = False) -> AsyncEngine:
    options: dict[str, Any] = {}
    connect_args = _connect_args(url, settings)
    if reads and url.get_backend_name() == Backend.POSTGRESQL:
        options["isolation_level"] = "AUTOCOMMIT"
        connect_args["server_settings"] = {"default_transaction_read_only": "on"}
    if url.get_backend_name() == Backend.SQLITE:
        connect_args["async_creator_fn"] = _connect_sqlite
        options["pool_reset_on_return"] = None  # see _roll_back_on_return
    engine = create_async_engine(
        url,
        poolclass=FairAsyncQueuePool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        connect_args=connect_args,
        **options,
    )
    if settings.db_pool_pre_ping:
        _ping_when_idle(engine, PING_AFTER_IDLE_SECONDS)
    _detect_lost_connections(engine)
    if url.get_backend_name() == "sqlite":
        _apply_sqlite_pragmas(engine, settings.sqlite_busy_timeout_ms, query_only=reads)
        _roll_back_on_return(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """``DB_POOL_PRE_PING`` without a round trip per request.

    SQLAlchemy's own pre-ping costs a round trip at every checkout, as much as the query a
    request came for. Here a connection returned less than ``idle_seconds`` ago is handed out
    as it is, unless its driver has already seen the server close it (asyncpg notices that
    without a round trip); one idle longer is pinged. A dead connection found either way is
    replaced, and every connection older than it is replaced when next checked out, as
    SQLAlchemy's pre-ping does. A connection that dies within the idle window fails the
    request that uses it with 503 ``database_unavailable`` (see _detect_lost_connections),
    and the pool is renewed the same way.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if _closed_by_server(dbapi_connection):
            raise exc.InvalidatePoolError()
        returned = record.info.get(_RETURNED_AT, 0.0)
        if time.monotonic() - returned < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the driver's own errors; any of them means "unusable"
            raise exc.InvalidatePoolError() from error


def _closed_by_server(dbapi_connection: Any) -> bool:
    """asyncpg marks a connection closed as soon as the loop reads the server's goodbye."""
    is_closed = getattr(dbapi_connection.driver_connection, "is_closed", None)
    return bool(is_closed()) if callable(is_closed) else False


def _detect_lost_connections(engine: AsyncEngine) -> None:
    """Treat "the server is terminating this connection" as a lost connection.

    SQLAlchemy's asyncpg dialect counts an error as a disconnect only once asyncpg has
    marked the connection closed, which may happen just after the error is raised. An error
    that names a lost connection invalidates the pool and becomes 503 either way.
    """

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        sqlstate = str(getattr(context.original_exception, "sqlstate", "") or "")
        if sqlstate.startswith("08") or sqlstate in _CONNECTION_GONE:
            context.is_disconnect = True


def create_migration_engine(settings: Settings) -> AsyncEngine:
    """An unpooled engine for Alembic.

    SQLite foreign keys stay off here on purpose: batch migrations rebuild a table by
    copying it and dropping the original, and with foreign keys on, that drop would
    cascade into every child table.
    """
    url = database_url(settings)
    return create_async_engine(url, poolclass=NullPool, connect_args=_connect_args(url, settings))


def _connect_args(url: URL, settings: Settings) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        # sqlite3's own timeout is the busy timeout, in seconds.
        return {"timeout": settings.sqlite_busy_timeout_ms / 1000}
    return {"timeout": settings.db_connect_timeout}


def _apply_sqlite_pragmas(
    engine: AsyncEngine, busy_timeout_ms: int, *, query_only: bool = False
) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if query_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()
        # The driver's own implicit BEGIN is DEFERRED: a transaction that reads and then
        # writes fails at once with "database is locked" if another writer committed in
        # between, whatever the busy timeout. We begin transactions ourselves instead.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Readers take a WAL snapshot (at their first read) and never wait. A unit of work
        # that may write takes the write lock up front (IMMEDIATE), so concurrent writers
        # queue on the busy timeout instead of failing; SQLite has one writer at a time.
        if not connection.get_execution_options().get(READS_ONLY):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        driver = connection.connection.driver_connection
        if isinstance(driver, _SqliteConnection):
            driver.begin_with_next_call()
        else:
            connection.exec_driver_sql("BEGIN")


class _SqliteConnection(aiosqlite.Connection):
    """aiosqlite's connection, whose read transactions cost no hop of their own.

    Each call aiosqlite makes on the connection's thread is a hop (the loop hands the call
    over and waits for its answer, ~15 futex calls). A read unit of work's deferred BEGIN
    takes no lock and no snapshot until the first read, so it is sent with the next call
    instead of alone: the reads that follow see one snapshot all the same. A ROLLBACK or a
    COMMIT with no transaction open (or only that BEGIN, not sent yet) does nothing, and
    costs no hop either; whether one is open is read without a hop (sqlite3's
    ``in_transaction``). ``_execute`` is aiosqlite's private way onto its thread (its own
    ``execute`` and ``rollback`` go through it): aiosqlite is pinned to >=0.22,<0.23 for it.
    """

    _begin: str | None = None

    def begin_with_next_call(self, sql: str = "BEGIN") -> None:
        self._begin = sql

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        on_thread: Any = super()._execute
        begin, self._begin = self._begin, None
        if begin is None:
            return await on_thread(fn, *args, **kwargs)
        return await on_thread(_begun_then, self._conn, begin, partial(fn, *args, **kwargs))

    @property
    def in_transaction(self) -> bool:
        return self._begin is not None or self._conn.in_transaction

    async def rollback(self) -> None:
        if self._begin is not None:
            self._begin = None
        elif self._conn.in_transaction:
            await super().rollback()

    async def commit(self) -> None:
        if self._begin is not None:
            self._begin = None
        elif self._conn.in_transaction:
            await super().commit()


def _begun_then(connection: sqlite3.Connection, begin: str, call: Callable[[], Any]) -> Any:
    connection.execute(begin).close()
    return call()


def _connect_sqlite(database: str, **options: Any) -> _SqliteConnection:
    """What ``aiosqlite.connect`` makes, as a ``_SqliteConnection`` (SQLAlchemy's
    ``async_creator_fn``); its thread is a daemon, as SQLAlchemy makes aiosqlite's."""
    connection = _SqliteConnection(partial(sqlite3.connect, database, **options), 64)
    connection._thread.daemon = True
    return connection


def _roll_back_on_return(engine: AsyncEngine) -> None:
    """Roll back a connection given back to the pool only if a transaction is open on it.

    SQLAlchemy's own reset-on-return rolls back unconditionally, and when a session closes
    it does so right after the session's own ROLLBACK; on SQLite each is a hop to the
    connection's thread. Whether a transaction is open is known without one (see
    ``_SqliteConnection``), and a ROLLBACK with none open does nothing. A connection that
    cannot say, or cannot roll back, is discarded by the pool, as with SQLAlchemy's own
    reset.
    """

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
        if not state.asyncio_safe:  # collected outside the loop: the pool terminates it
            return
        driver = getattr(dbapi_connection, "driver_connection", None)
        in_transaction = getattr(driver, "in_transaction", True)
        if in_transaction:
            dbapi_connection.rollback()


def create_session_factory(engine: AsyncEngine) -> WriteSessionFactory:
    """Sessions for units of work that may write (see ``uow``)."""
    return async_sessionmaker(engine, class_=WriteSession, expire_on_commit=False, autoflush=False)


def create_read_session_factory(engine: AsyncEngine) -> ReadSessionFactory:
    """Sessions for units of work that only read (see ``read_uow``), on an engine from
    ``create_read_engine``; they never wait for SQLite's write lock."""
    bind = engine.execution_options(**{READS_ONLY: True})
    return async_sessionmaker(bind, class_=ReadSession, expire_on_commit=False, autoflush=False)


_VERSION_QUERY = {
    Backend.POSTGRESQL: "SELECT version()",
    Backend.SQLITE: "SELECT 'SQLite ' || sqlite_version()",
}


async def server_version(engine: AsyncEngine) -> str:
    """Ask the database for its version; this is also the cheapest proof that it answers."""
    async with engine.execution_options(**{READS_ONLY: True}).connect() as connection:
        result = await connection.execute(text(_VERSION_QUERY[backend_of(engine)]))
        return str(result.scalar_one())


async def wait_for_database(engine: AsyncEngine, *, attempts: int, delay: float) -> str:
    """Try the database up to ``attempts`` times, ``delay`` seconds apart; return its version."""
    where = engine.url.render_as_string(hide_password=True)
    last_error: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            version = await server_version(engine)
        except Exception as exc:  # drivers share no base class for "cannot connect"
            last_error = exc
        else:
            log.info("database.ready", url=where, version=version, attempt=attempt)
            return version
        log.warning(
            "database.unreachable",
            url=where,
            attempt=attempt,
            attempts=attempts,
            error=_describe_error(last_error),
        )
        if attempt < attempts:
            await asyncio.sleep(delay)
    raise DatabaseUnavailable(
        f"database at {where} did not answer after {attempts} attempt(s): "
        f"{_describe_error(last_error)}"
    )


def _describe_error(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def pool_figures(engine: AsyncEngine) -> dict[str, int]:
    """Connection pool occupancy, for readiness and metrics (empty for pools that keep none)."""
    pool: Any = engine.pool
    if not all(hasattr(pool, name) for name in ("size", "checkedin", "checkedout", "overflow")):
        return {}
    return {
        "size": pool.size(),
        "checked_in": pool.checkedin(),
        "checked_out": pool.checkedout(),
        # SQLAlchemy counts overflow from -size; callers want "connections beyond size".
        "overflow": max(pool.overflow(), 0),
    }


@asynccontextmanager
async def uow(session_factory: WriteSessionFactory) -> AsyncIterator[WriteSession]:
    """One unit of work: commit once if the block succeeds, roll back if it raises.

    An error that is an outcome rather than a failure (``keeps_changes``, e.g. a failed login
    that must be counted, or a refresh token replay that revoked its session) is raised
    after its changes are committed.
    """
    async with session_factory() as session:
        try:
            yield session
        except TablehouseError as exc:
            if exc.keeps_changes:
                await _commit_or_roll_back(session)
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        await _commit_or_roll_back(session)


@asynccontextmanager
async def read_uow(session_factory: ReadSessionFactory) -> AsyncIterator[ReadSession]:
    """A unit of work that only reads: nothing to commit, so it just ends (rolling back).

    Its connections refuse writes (see ``create_read_engine``), so a COMMIT would change
    nothing; skipping it saves a step per request.
    """
    async with session_factory() as session:
        yield session


async def _commit_or_roll_back(session: AsyncSession) -> None:
    # A COMMIT can fail (a deferred constraint, a lost connection) and leave the
    # transaction open; end it here rather than hand a locked connection back to the pool.
    try:
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
