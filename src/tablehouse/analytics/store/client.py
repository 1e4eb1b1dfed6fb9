"""The ClickHouse store behind the query log and metrics: embedded chDB or a ClickHouse server.

Both go through clickhouse-connect, so the DDL and SQL are the same for both. Its client is
synchronous, so every call runs in ``asyncio.to_thread``.

SQL parameters use ClickHouse server-side binding: write ``{name:Type}`` in the SQL and pass
``{"name": value}``; ClickHouse parses the value as ``Type``, so nothing is spliced into SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

T = TypeVar("T")
CHDB_PREFIX = "chdb:///"
CONNECT_TIMEOUT_S = 5
SEND_RECEIVE_TIMEOUT_S = 60

# ClickHouse errors meaning "not now" rather than "never": the same batch can succeed later
# (load, network, replicas; a schema not migrated yet, credentials or grants being fixed), so
# callers keep it instead of dead-lettering it.
_TRANSIENT = """
    TIMEOUT_EXCEEDED TOO_SLOW CANNOT_ALLOCATE_MEMORY TOO_MANY_SIMULTANEOUS_QUERIES ABORTED
    NO_FREE_CONNECTION MEMORY_LIMIT_EXCEEDED NOT_ENOUGH_SPACE TOO_MANY_PARTS SERVER_OVERLOADED
    QUERY_WAS_CANCELLED CANNOT_SCHEDULE_TASK DEADLOCK_AVOIDED UNEXPECTED_END_OF_FILE
    ATTEMPT_TO_READ_AFTER_EOF CANNOT_READ_FROM_SOCKET CANNOT_WRITE_TO_SOCKET SOCKET_TIMEOUT
    NETWORK_ERROR ALL_CONNECTION_TRIES_FAILED SYSTEM_ERROR NO_ZOOKEEPER KEEPER_EXCEPTION
    TABLE_IS_READ_ONLY TOO_FEW_LIVE_REPLICAS UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE NOT_A_LEADER
    UNKNOWN_STATUS_OF_INSERT ALL_REPLICAS_ARE_STALE REPLICA_STATUS_CHANGED UNKNOWN_TABLE
    UNKNOWN_DATABASE TABLE_IS_DROPPED READONLY UNKNOWN_USER WRONG_PASSWORD REQUIRED_PASSWORD
    ACCESS_DENIED AUTHENTICATION_FAILED
"""
_UNAVAILABLE_ERRORS = frozenset(_TRANSIENT.split())


class StoreUnavailable(Exception):
    """The store could not be reached or cannot take the request now: keep the data, retry."""


class StoreLocked(StoreUnavailable):
    """The embedded store's directory is held by another process (a running server, most
    likely): chDB opens a data directory in one process at a time."""

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"the embedded analytics store {path} is in use by {holder}")
        self.path, self.pid = path, pid


def chdb_holder(path: str) -> int | None:
    """The process holding the chDB directory ``path`` (0 if its id is unreadable), or None.

    chDB, like ClickHouse, ``flock``s ``<path>/status`` and writes its ``PID:`` there. Asking
    here first spares an open that would fail, and the line chDB then prints on stderr. The
    lock taken to ask is shared and dropped at once. Only meaningful while this process has
    no engine open on ``path``: a lock is held per open file, so its own would answer too.
    """
    try:
        fd = os.open(os.path.join(path, "status"), os.O_RDONLY)
    except OSError:
        return None  # never opened, or unreadable: the open itself will say
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            found = re.search(rb"^PID: (\d+)", os.pread(fd, 256, 0), re.MULTILINE)
            return int(found[1]) if found else 0
        except OSError:
            return None
        return None
    finally:
        os.close(fd)  # drops the lock, if taken


class StoreRejected(Exception):
    """The store understood the request and refused it (bad data or SQL): retrying won't help."""


def chdb_url(path: str | os.PathLike[str]) -> str:
    """The URL of an embedded store at ``path``: ``chdb:///`` then the path as written."""
    return CHDB_PREFIX + os.fspath(path)


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """Where the analytics tables live.

    Like SQLite URLs, ``chdb:///`` is followed by the path as written: ``chdb:///./data/x``
    and ``chdb:///data/x`` are relative to the working directory, ``chdb:////var/lib/x`` is
    absolute. ``from_url`` resolves it, so ``url`` always names an absolute path.
    """

    url: str
    database: str
    cluster: str | None = None

    @classmethod
    def from_url(
        cls, url: str, *, database: str = "tablehouse", cluster: str | None = None
    ) -> StoreTarget:
        if url.startswith(CHDB_PREFIX):
            path = unquote(urlsplit(url).path[1:])  # drops any ?query, which chDB can't use
            if not path:
                raise ValueError("an embedded analytics URL needs a path, e.g. chdb:///./data/x")
            url = chdb_url(os.path.realpath(path))
        elif url.startswith(("http://", "https://")):
            parts = urlsplit(url)
            if not parts.hostname:
                raise ValueError(f"analytics URL has no host: {_mask(url)}")
            database = unquote(parts.path.strip("/").split("/")[0]) or database
        else:
            raise ValueError("expected chdb:///path or http(s)://user:pass@host:8123/db")
        if not database:
            raise ValueError("the analytics store needs a database name")
        return cls(url=url, database=database, cluster=cluster or None)

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb:")

    @property
    def path(self) -> str:
        """The chDB data directory (embedded targets only)."""
        return os.path.realpath(self.url[len(CHDB_PREFIX) :])

    def describe(self) -> str:
        return _mask(self.url)


def _mask(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


class _ChdbEngine:
    """chDB runs one engine, on one data path, per process: a second path is refused here
    with a clear message. Each store has its own handle on the engine (``USE`` state is per
    handle); the last one closed shuts the engine down, and then another path may be used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: str | None = None
        self._users = 0

    def open(self, path: str, factory: Callable[[], Client]) -> Client:
        with self._lock:
            if self._users and path != self._path:
                raise StoreUnavailable(
                    f"chDB allows one data path per process; already using {self._path}, "
                    f"cannot also open {path}"
                )
            if not self._users:
                holder = chdb_holder(path)
                # Our own pid: an engine this process closed may keep its lock; chDB decides.
                if holder is not None and holder != os.getpid():
                    raise StoreLocked(path, holder)
            client = factory()
            self._path, self._users = path, self._users + 1
            return client

    def close(self, client: Client) -> None:
        with self._lock:
            self._users -= 1
            client.close()  # the last handle closed shuts the engine down


_engine = _ChdbEngine()


def _skip_pandas() -> None:
    """Tell clickhouse-connect that pandas is absent (chDB installs it).

    Every insert asks whether its rows are a pandas DataFrame, which imports pandas on the
    first one: 1.3 s of CPU, mostly holding the GIL, in the middle of serving, and 50 MiB that
    stay resident. Our rows are lists, and no call of ours asks for a DataFrame.
    """
    from clickhouse_connect.driver import options

    options.pd = None
    options.pd_time_test = None


class AnalyticsStore:
    """Thread-safe enough for one asyncio app: every call runs in ``asyncio.to_thread``.

    A chDB handle must not run two calls at once, so embedded calls are serialised (an asyncio
    lock per event loop, then a thread lock on the handle). The HTTP client is thread-safe
    without a session id, so calls to a server run concurrently.
    """

    def __init__(self, target: StoreTarget) -> None:
        self.target = target
        self._client: Client | None = None
        self._closed = False
        self._open_lock = threading.Lock()
        self._serial: AbstractContextManager[Any] = (
            threading.Lock() if target.embedded else contextlib.nullcontext()
        )
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def connect(self) -> None:
        """Open the connection and create the database if missing; a no-op once connected."""
        await self._run(lambda client: None)

    async def ping(self) -> str:
        """The server's version, from a real round trip."""
        rows = await self.query("SELECT version() AS version")
        return str(rows[0]["version"])

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, OPTIMIZE, ...)."""
        params = dict(parameters) if parameters else None
        await self._run(lambda client: client.command(sql, parameters=params))

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Rows as dicts; UUIDs as ``uuid.UUID``, ``DateTime64(3, 'UTC')`` as aware datetimes."""
        params = dict(parameters) if parameters else None
        return await self._run(
            lambda client: list(client.query(sql, parameters=params).named_results())
        )

    async def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> None:
        """Insert into ``table`` of the target database. ``dedup_token`` names the batch: a
        retried batch whose token the table has seen (within its deduplication window) is
        dropped, so a resend after a lost answer is not counted twice."""
        if not rows:
            return
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        names, data, database = list(columns), [list(row) for row in rows], self.target.database
        await self._run(
            lambda c: c.insert(
                table, data, column_names=names, database=database, settings=settings
            )
        )

    async def close(self) -> None:
        """Release the connection for good; later calls raise ``StoreUnavailable``."""
        await asyncio.to_thread(self._close)

    async def _run(self, call: Callable[[Client], T]) -> T:
        # Embedded waiters queue here, on the loop, rather than each holding a worker thread.
        # asyncio locks belong to one loop, and tests or CLI commands may each bring their own.
        gate: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        if self.target.embedded:
            gate = self._gates.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with gate:
            return await asyncio.to_thread(self._call, call)

    def _call(self, call: Callable[[Client], T]) -> T:
        client = self._connected()
        with self._serial:
            try:
                return call(client)
            except Exception as exc:
                raise _classify(exc, self.target.describe()) from exc

    def _connected(self) -> Client:
        with self._open_lock:
            if self._closed:
                raise StoreUnavailable(f"the analytics store {self.target.describe()} is closed")
            if self._client is None:
                self._client = self._open()
            return self._client

    def _open(self) -> Client:
        target = self.target
        try:
            if target.embedded:
                client = _engine.open(target.path, self._new_client)
            else:
                client = self._new_client()
        except StoreUnavailable:
            raise
        except Exception as exc:
            hint = " (is another process using it?)" if target.embedded else ""
            message = f"cannot open analytics store {target.describe()}{hint}: {exc}"
            raise StoreUnavailable(message) from exc
        try:
            self._create_database(client)
        except Exception as exc:
            self._release(client)
            # Whatever the server said, no data is at fault yet: the caller should keep it.
            message = f"cannot prepare analytics store {target.describe()}: {exc}"
            raise StoreUnavailable(message) from exc
        return client

    def _new_client(self) -> Client:
        import clickhouse_connect  # here, not at the top: it (and chDB) load slowly

        _skip_pandas()
        if self.target.embedded:
            os.makedirs(self.target.path, exist_ok=True)
            return clickhouse_connect.get_client(
                interface="chdb", path=self.target.path, tz_mode="aware"
            )
        parts = urlsplit(self.target.url)
        return clickhouse_connect.get_client(
            dsn=urlunsplit(parts._replace(path="")),  # a client opened on a missing db fails
            interface=parts.scheme,
            connect_timeout=CONNECT_TIMEOUT_S,
            send_receive_timeout=SEND_RECEIVE_TIMEOUT_S,
            autogenerate_session_id=False,  # a session admits one query at a time
            tz_mode="aware",
        )

    def _create_database(self, client: Client) -> None:
        database = self.target.database
        found = client.query(
            "SELECT 1 FROM system.databases WHERE name = {name:String}",
            parameters={"name": database},
        ).result_rows
        if not found:  # checked first: a server account may use a database it can't create
            cluster = f" ON CLUSTER {quote(self.target.cluster)}" if self.target.cluster else ""
            client.command(f"CREATE DATABASE IF NOT EXISTS {quote(database)}{cluster}")
        client.database = database

    def _close(self) -> None:
        with self._open_lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            with self._serial:
                self._release(client)

    def _release(self, client: Client) -> None:
        if self.target.embedded:
            _engine.close(client)
        else:
            client.close()


def quote(identifier: str) -> str:
    """A ClickHouse identifier: bare when plainly safe, else backquoted."""
    if identifier.isidentifier() and identifier.isascii():
        return identifier
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _classify(exc: Exception, where: str) -> Exception:
    """Map a clickhouse-connect failure to ``StoreUnavailable`` or ``StoreRejected``."""
    from clickhouse_connect.driver import exceptions as ch

    if isinstance(exc, ch.Error) and exc.code is not None:
        # ClickHouse answered with an error: its name says whether it is transient.
        error_type = StoreUnavailable if exc.name in _UNAVAILABLE_ERRORS else StoreRejected
    elif isinstance(exc, ch.OperationalError | OSError | TimeoutError):
        error_type = StoreUnavailable  # transport: refused, reset, timed out, 429/503/504
    elif isinstance(exc, ch.DatabaseError) and "HTTP status" in str(exc):
        error_type = StoreUnavailable  # an HTTP error without a ClickHouse code: a proxy, not CH
    else:
        # Client-side refusals: values that don't fit a column (ValueError, TypeError,
        # DataError), unknown columns (ProgrammingError).
        error_type = StoreRejected
    return error_type(f"{where}: {type(exc).__name__}: {exc}")
