"""CPU time and database round trips per request on the hot paths, in-process.

The app is built with ``create_app`` (as ``tablehouse serve`` builds it) and called straight
through ASGI, without a server or an HTTP client, by C concurrent callers on a uvloop loop;
the process's CPU time (``time.process_time``) over N requests, divided by N, is what the
app itself costs per request — PostgreSQL runs in its own process and is not counted. This
is the figure to guide work on a shared machine, where throughput is noisy.

Round trips are counted in a second pass, one request at a time, through a TCP proxy in
front of PostgreSQL that counts what the app sends: each round trip is one send. With
``--backend sqlite`` (the embedded default, in a temporary folder) the second pass counts
thread hops instead: each call aiosqlite queues for its connection's thread is one hop,
with the functions called listed below the table; there is no floor app on SQLite.

Requests (as ``bench/hot_paths.py``): ``me`` (GET /users/me, access token), ``row``
(GET /schemas/events/rows/{id}, access token), ``point`` and ``aggregate`` (POST /query,
API key), plus ``health`` (GET /health, no database) as the framework's own floor.

Needs PostgreSQL (``TEST_POSTGRES_URL``) unless ``--backend sqlite``; creates and drops its
own database.

Run: ``uv run python bench/cpu_per_request.py [--requests 4000] [--concurrency 16]
[--rows 100000] [--cases health,me,row,point,aggregate] [--analytics] [--spy api|floor]
[--backend postgresql|sqlite]``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import floor_app
import httpx
import query as query_bench  # bench/query.py: this script's folder is first on sys.path
import uvloop
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tablehouse.app import create_app
from tablehouse.config import Settings, load_settings
from tablehouse.core import migrations
from tablehouse.core.logging import configure_logging

CASES = ("health", "me", "row", "point", "aggregate")
Message = dict[str, Any]


# --- calling the app -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str  # "{id}" is replaced by a random id
    headers: list[tuple[bytes, bytes]]
    body: str = ""


async def _call(app: FastAPI, call: Call, key: int) -> int:
    """One request straight through ASGI; its status."""
    body = call.body.replace("{id}", str(key)).encode()
    path = call.path.replace("{id}", str(key))
    headers = [*call.headers, (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": call.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never goes away
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _callers(
    app: FastAPI, call: Call, *, requests: int, concurrency: int, rows: int
) -> tuple[float, float]:
    """CPU seconds and wall seconds for ``requests`` calls by ``concurrency`` callers."""
    remaining = requests

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await _call(app, call, random.randint(1, rows))
            if status != 200:
                raise RuntimeError(f"{call.method} {call.path} answered {status}")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.process_time() - cpu, time.perf_counter() - wall


# --- counting round trips ------------------------------------------------------------------


class CountingProxy:
    """127.0.0.1:<port> → PostgreSQL, on a thread of its own; counts the client's sends."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.sends = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(
            self._pipe(reader, upstream_writer, count=True),
            self._pipe(upstream_reader, writer, count=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    self.sends += 1
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


class HopCounter:
    """Counts the calls aiosqlite queues for its connections' threads (each one a hop: the
    loop hands the call to the thread and waits for its answer), by the function called."""

    def __init__(self) -> None:
        self.hops = 0
        self.functions: collections.Counter[str] = collections.Counter()

    @contextmanager
    def counting(self) -> Iterator[None]:
        original = aiosqlite.Connection._execute

        async def counted(connection: aiosqlite.Connection, fn: Any, *args: Any, **kw: Any) -> Any:
            self.hops += 1
            self.functions[getattr(fn, "__qualname__", repr(fn))] += 1
            return await original(connection, fn, *args, **kw)

        setattr(aiosqlite.Connection, "_execute", counted)  # noqa: B010
        try:
            yield
        finally:
            setattr(aiosqlite.Connection, "_execute", original)  # noqa: B010


# --- set-up --------------------------------------------------------------------------------


def _settings(dsn: str | None, folder: Path, analytics: bool) -> Settings:
    """On PostgreSQL at ``dsn``, or on SQLite in ``folder`` when ``dsn`` is None."""
    if dsn is None:
        url = f"sqlite+aiosqlite:///{folder / 'tablehouse.db'}"
    else:
        url = make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(False)
    return load_settings(
        _env_file=None,
        jwt_secret=secrets.token_urlsafe(48),
        database_url=url,
        data_dir=folder,
        log_level="WARNING",
        analytics_enabled=analytics,
        query_max_concurrent_per_user=64,
        db_pool_size=query_bench.POOL_SIZE,
        db_max_overflow=0,
    )


@asynccontextmanager
async def _running(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str
    api_key: str


async def _prepare(app: FastAPI, rows: int) -> Credentials:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        account = {"email": "bench@example.com", "password": query_bench.PASSWORD}
        assert (await client.post("/api/v1/auth/register", json=account)).status_code == 201
        token = (await client.post("/api/v1/auth/login", json=account)).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        schema = {"name": "events", "fields": query_bench.FIELDS}
        assert (await client.post("/api/v1/schemas", json=schema)).status_code == 201
        loaded = await client.post(
            "/api/v1/schemas/events/rows",
            content=query_bench._csv(rows),
            headers={"Content-Type": "text/csv"},
        )
        assert loaded.status_code == 201, loaded.text[:300]
        made = await client.post("/api/v1/auth/api-keys", json={"name": "b", "scopes": ["query"]})
        return Credentials(token, made.json()["key"])


def _headers(credentials: Credentials) -> tuple[list[tuple[bytes, bytes]], ...]:
    token = [(b"authorization", f"Bearer {credentials.token}".encode())]
    key = [(b"authorization", f"Bearer {credentials.api_key}".encode())]
    return token, [*key, (b"content-type", b"application/json")]


def _api_calls(credentials: Credentials) -> dict[str, Call]:
    token, key = _headers(credentials)
    return {
        "health": Call("GET", "/health", []),
        "me": Call("GET", "/api/v1/users/me", token),
        "row": Call("GET", "/api/v1/schemas/events/rows/{id}", token),
        "point": Call("POST", "/api/v1/query", key, query_bench._api_template("point")),
        "aggregate": Call("POST", "/api/v1/query", key, query_bench._api_template("aggregate")),
    }


def _floor_calls(credentials: Credentials, table: str) -> dict[str, Call]:
    token, key = _headers(credentials)
    return {
        "health": Call("GET", "/health", []),
        "me": Call("GET", "/users/me", token),
        "row": Call("GET", "/rows/{id}", token),
        "point": Call("POST", "/auth/query", key, query_bench._floor_template("point", table)),
        "aggregate": Call(
            "POST", "/auth/query", key, query_bench._floor_template("aggregate", table)
        ),
    }


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    requests: int
    concurrency: int
    rows: int
    cases: tuple[str, ...]
    analytics: bool
    spy: str | None  # "api" or "floor": pause before measuring it, to attach py-spy
    backend: str = "postgresql"  # or "sqlite": no floor, hops instead of round trips


@dataclass(slots=True)
class Figures:
    cpu_us: float = 0.0  # process CPU per request
    rate: float = 0.0  # requests/s in-process (the database shares the machine)
    round_trips: float = 0.0  # sends to the database per request (SQLite: thread hops)
    hops_by_function: dict[str, float] = field(default_factory=dict)  # SQLite only


async def _measure_cpu(
    app: FastAPI, calls: dict[str, Call], options: Options, target: str
) -> dict[str, Figures]:
    if options.spy == target:
        print(f"pid {os.getpid()}: attach now; starting in 10 s", file=sys.stderr)
        await asyncio.sleep(10)
    found = {}
    for name in options.cases:
        load = {"concurrency": options.concurrency, "rows": options.rows}
        await _callers(app, calls[name], requests=max(options.requests // 4, 1), **load)
        cpu, wall = await _callers(app, calls[name], requests=options.requests, **load)
        found[name] = Figures(cpu / options.requests * 1e6, options.requests / wall)
    return found


async def _count_round_trips(
    settings: Settings, calls: dict[str, Call], options: Options, found: dict[str, Figures]
) -> None:
    """One request at a time, through the counting proxy (after a few to fill the caches)."""
    url = make_url(settings.database_url)
    proxy = CountingProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    async with _running(settings.model_copy(update={"database_url": proxied})) as app:
        for name in options.cases:
            for _ in range(20):
                await _call(app, calls[name], random.randint(1, options.rows))
            before, count = proxy.sends, 50
            for _ in range(count):
                await _call(app, calls[name], random.randint(1, options.rows))
            found[name].round_trips = (proxy.sends - before) / count


async def _count_hops(
    app: FastAPI, calls: dict[str, Call], options: Options, found: dict[str, Figures]
) -> None:
    """SQLite: one request at a time, the hops to the connections' threads it makes."""
    counter = HopCounter()
    for name in options.cases:
        for _ in range(20):
            await _call(app, calls[name], random.randint(1, options.rows))
        count = 50
        with counter.counting():
            counter.hops, counter.functions = 0, collections.Counter()
            for _ in range(count):
                await _call(app, calls[name], random.randint(1, options.rows))
        found[name].round_trips = counter.hops / count
        found[name].hops_by_function = {
            function: calls_made / count for function, calls_made in counter.functions.items()
        }


async def _run(
    options: Options, settings: Settings, dsn: str | None
) -> tuple[dict[str, Figures], dict[str, Figures] | None]:
    """The API's figures and the floor's (None on SQLite, where there is no floor)."""
    async with _running(settings) as app:
        credentials = await _prepare(app, options.rows)
        calls = _api_calls(credentials)
        found = await _measure_cpu(app, calls, options, "api")
        if dsn is None:
            await _count_hops(app, calls, options, found)
            return found, None
    await _count_round_trips(settings, calls, options, found)
    table = await query_bench._table_name(dsn)
    assert settings.jwt_secret is not None
    floor = floor_app.create_app(
        dsn, jwt_key=settings.jwt_secret.get_secret_value(), rows_table=table
    )
    async with floor.router.lifespan_context(floor):
        floor_calls = _floor_calls(credentials, table)
        floor_found = await _measure_cpu(floor, floor_calls, options, "floor")
    return found, floor_found


def _options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated")
    parser.add_argument("--analytics", action="store_true", help="analytics on (embedded chDB)")
    parser.add_argument(
        "--spy", choices=("api", "floor"), help="pause 10 s before it, to attach py-spy"
    )
    parser.add_argument(
        "--backend",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="sqlite: the embedded default, no floor; counts thread hops",
    )
    arguments = parser.parse_args()
    cases = tuple(name.strip() for name in arguments.cases.split(",") if name.strip())
    if unknown := sorted(set(cases) - set(CASES)):
        parser.error(f"unknown cases: {', '.join(unknown)}; choose from {', '.join(CASES)}")
    return Options(
        requests=arguments.requests,
        concurrency=arguments.concurrency,
        rows=arguments.rows,
        cases=cases,
        analytics=arguments.analytics,
        spy=arguments.spy,
        backend=arguments.backend,
    )


def main() -> None:
    options = _options()
    if options.backend == "sqlite":
        found, floor = _measure(options, None)
    else:
        database = f"th_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(query_bench._admin(f"CREATE DATABASE {database}"))
        try:
            found, floor = _measure(options, query_bench._dsn(database))
        finally:
            asyncio.run(query_bench._drop_database(database))
    print(f"{options.requests} requests per case, {options.concurrency} concurrent callers")
    if floor is None:
        _print_sqlite(found)
        return
    print(
        "| request | API CPU µs | floor CPU µs | floor/API CPU | API req/s | floor req/s "
        "| API round trips |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, api in found.items():
        low = floor[name]
        cells = [
            f"{api.cpu_us:,.0f}",
            f"{low.cpu_us:,.0f}",
            f"{low.cpu_us / api.cpu_us:.2f}",
            f"{api.rate:,.0f}",
            f"{low.rate:,.0f}",
            f"{api.round_trips:.1f}",
        ]
        print(f"| {name} | {' | '.join(cells)} |")


def _measure(
    options: Options, dsn: str | None
) -> tuple[dict[str, Figures], dict[str, Figures] | None]:
    with tempfile.TemporaryDirectory() as folder:
        settings = _settings(dsn, Path(folder), options.analytics)
        configure_logging(settings)
        migrations.upgrade(settings)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_run(options, settings, dsn))


def _print_sqlite(found: dict[str, Figures]) -> None:
    print("| request (SQLite) | API CPU µs | API req/s | thread hops |")
    print("|---|---:|---:|---:|")
    for name, api in found.items():
        print(f"| {name} | {api.cpu_us:,.0f} | {api.rate:,.0f} | {api.round_trips:.1f} |")
    for name, api in found.items():
        if api.hops_by_function:
            hops = sorted(api.hops_by_function.items(), key=lambda item: -item[1])
            print(f"{name}: " + ", ".join(f"{function} {count:g}" for function, count in hops))


if __name__ == "__main__":
    main()
