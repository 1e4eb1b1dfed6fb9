"""A PostgreSQL restart as the app sees it, played on a database of the test's own.

The machine's PostgreSQL cluster is shared, so it is never stopped. What a restart does to
a client is played in front of it instead, by a TCP proxy the app connects through:

1. shutting down: new connections are told ``57P03 the database system is shutting down``
   and every backend of the test's database is terminated (``57P01``, as a fast shutdown
   does to each session);
2. down: connections are refused;
3. starting up: new connections are told ``57P03 the database system is starting up``;
4. up: connections reach the database again.

It can also stop answering altogether, as a host does that drops packets (a network
partition, a failover): connections are taken and never spoken to.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from tests.support import databases
from tests.support.tcp_proxy import TcpProxy

SSL_REQUEST = 80877103
GSS_REQUEST = 80877104
CANCEL_REQUEST = 80877102
SHUTTING_DOWN = "the database system is shutting down"
STARTING_UP = "the database system is starting up"


async def admin_rows(sql: str, *args: object) -> list[Mapping[str, Any]]:
    """Rows of one query on the admin database (``pg_stat_activity`` and the like)."""
    admin = make_url(databases.POSTGRES_ADMIN_URL).set(drivername="postgresql")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def terminate_backends(database: str) -> int:
    """Terminate every session on ``database`` (only the test's own); how many there were."""
    rows = await admin_rows(
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return sum(1 for row in rows if row["done"])


async def sessions_by_state(database: str) -> dict[str, int]:
    rows = await admin_rows(
        "SELECT coalesce(state, '') AS state, count(*) AS n FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid() GROUP BY 1",
        database,
    )
    return {str(row["state"]): int(row["n"]) for row in rows}


class RestartingPostgres(TcpProxy):
    """The proxy in front of ``database``, able to play each phase of a restart."""

    def __init__(self, database: str) -> None:
        admin = make_url(databases.POSTGRES_ADMIN_URL)
        super().__init__(admin.host or "127.0.0.1", admin.port or 5432)
        self.database = database
        self._refusal: str | None = None
        self._silent = False

    def __enter__(self) -> RestartingPostgres:
        super().__enter__()
        return self

    @property
    def url(self) -> str:
        """The test database's URL, through the proxy."""
        url = make_url(databases.postgres_url(self.database))
        return url.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    async def shut_down(self) -> int:
        """Refuse new sessions as a shutting-down server does and end the current ones;
        how many sessions were ended."""
        self._refusal = SHUTTING_DOWN
        return await terminate_backends(self.database)

    async def go_down(self) -> None:
        """Drop every connection and refuse new ones: nothing listens."""
        await asyncio.to_thread(self.cut)

    async def start_up(self) -> None:
        self._refusal = STARTING_UP
        await asyncio.to_thread(self.restore)

    async def stop_answering(self) -> None:
        """End the current sessions; take new connections and never say a word on them."""
        await asyncio.to_thread(self.cut)
        self._silent = True
        await asyncio.to_thread(self.restore)

    async def ready(self) -> None:
        """Forward connections to the database again (listening again if it had stopped)."""
        self._refusal = None
        self._silent = False
        if self._server is None:
            await asyncio.to_thread(self.restore)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._silent:
            self._writers.add(writer)  # so that cut() and the end of the block close it
            with contextlib.suppress(ConnectionError):
                await reader.read()  # until the client gives up
        elif self._refusal is not None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await _refuse_startup(reader, writer, self._refusal)
        else:
            await super()._accept(reader, writer)
            return
        writer.transport.abort()


async def _refuse_startup(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: str
) -> None:
    """Answer a connection's start-up as the postmaster does while it cannot take sessions:
    no to encryption, then FATAL 57P03 with ``message``."""
    while True:
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        packet = await reader.readexactly(length - 4)
        (code,) = struct.unpack("!i", packet[:4])
        if code in (SSL_REQUEST, GSS_REQUEST):
            writer.write(b"N")
            await writer.drain()
            continue
        if code == CANCEL_REQUEST:
            return
        writer.write(_error_response("57P03", message))
        await writer.drain()
        return


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body
