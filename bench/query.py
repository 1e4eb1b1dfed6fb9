"""SQL query API throughput on PostgreSQL, against a floor and the raw driver in the same run.

Two statements over a dataset of N rows (default 100,000; ``id`` key, ``user_id``,
``kind`` with 10 values, ``amount``):

- point:     ``SELECT * FROM events WHERE id = :id``, ``id`` random in 1..N;
- aggregate: ``SELECT kind, count(*), avg(amount) FROM events GROUP BY kind``.

Each runs against three targets, with the same concurrency and duration, after a warm-up:

- **api**:    ``POST /api/v1/query`` on a real ``tablehouse serve`` process (API key auth);
- **floor**:  ``bench/floor_app.py``, a minimal FastAPI + asyncpg endpoint (pool of 10) running
  the same statement (``$1`` style, on the physical table), served by uvicorn the same way;
- **raw**:    ``pool.fetch`` of the same statement on asyncpg (pool of 10), no HTTP: a ceiling.

The HTTP load comes from ``wrk`` (Lua script) when it is on PATH, else from a built-in
asyncio generator (raw sockets, HTTP/1.1 keep-alive, pre-encoded requests). Any response
that is not 200 is counted as an error, and a run with errors is reported as invalid.
The target (issue): API point-query throughput >= 0.5x the floor.

Needs a PostgreSQL server (``TEST_POSTGRES_URL``, default postgres@127.0.0.1:5432). Creates
and drops its own database. Run: ``uv run python bench/query.py [--duration 10]
[--concurrency 32] [--loadgen auto|wrk|python]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop
from sqlalchemy.engine import make_url

from tablehouse.config import load_settings
from tablehouse.core import migrations

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FLOOR_APP = Path(__file__).with_name("floor_app.py")
PASSWORD = "benchmark password"
KINDS = 10
POOL_SIZE = 10  # Tablehouse's DB_POOL_SIZE default, used by the floor and the raw driver
FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "integer", "primary_key": True},
    {"name": "user_id", "type": "integer", "nullable": False},
    {"name": "kind", "type": "string"},
    {"name": "amount", "type": "float"},
]
API_SQL = {
    "point": "SELECT * FROM events WHERE id = :id",
    "aggregate": "SELECT kind, count(*), avg(amount) FROM events GROUP BY kind",
}
# The same statements for asyncpg: {table} is the dataset's physical table.
DRIVER_SQL = {
    "point": "SELECT * FROM {table} WHERE id = $1",
    "aggregate": "SELECT kind, count(*), avg(amount) FROM {table} GROUP BY kind",
}
PRE_ENCODED = 4096  # distinct point-query requests the built-in generator cycles through


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measurement:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def _measurement(latencies: list[float], seconds: float, errors: int) -> Measurement:
    latencies.sort()
    return Measurement(
        requests=len(latencies),
        seconds=seconds,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        errors=errors,
    )


# --- what each target is sent --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """Where to POST, and the JSON body for one statement; ``{id}`` in it is the varying id."""

    port: int
    path: str
    headers: dict[str, str]
    body_template: str

    def body(self, key: int) -> bytes:
        return self.body_template.replace("{id}", str(key)).encode()


def _api_template(statement: str) -> str:
    params = {"id": 0} if statement == "point" else {}
    body = orjson.dumps({"sql": API_SQL[statement], "params": params}).decode()
    return body.replace('"id":0', '"id":{id}')


def _floor_template(statement: str, table: str) -> str:
    args = [0] if statement == "point" else []
    body = orjson.dumps({"sql": DRIVER_SQL[statement].format(table=table), "args": args})
    return body.decode().replace("[0]", "[{id}]")


# --- load generators -----------------------------------------------------------------------


def _encoded_requests(target: HttpTarget, ids: list[int]) -> list[bytes]:
    head = f"POST {target.path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in target.headers.items())
    encoded = []
    for key in ids:
        body = target.body(key)
        encoded.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return encoded


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError("response without Content-Length: " + head[:200].decode(errors="replace"))


async def _http_connection(
    port: int, requests: list[bytes], offset: int, stop_at: float, latencies: list[float]
) -> int:
    """Send requests one after another on one keep-alive connection until ``stop_at``;
    the number of errors (answers other than 200, or the connection failing)."""
    errors = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        index = offset
        while (started := time.perf_counter()) < stop_at:
            writer.write(requests[index % len(requests)])
            index += 1
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head))
            latencies.append(time.perf_counter() - started)
            if head[9:12] != b"200":
                errors += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        errors += 1  # the connection is gone: this one stops
    finally:
        writer.close()
    return errors


async def _python_http(
    target: HttpTarget, ids: list[int], concurrency: int, seconds: float
) -> Measurement:
    requests = _encoded_requests(target, ids)
    latencies: list[float] = []
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(
            _http_connection(
                target.port,
                requests,
                n * len(requests) // concurrency,
                started + seconds,
                latencies,
            )
            for n in range(concurrency)
        )
    )
    return _measurement(latencies, time.perf_counter() - started, sum(counts))


WRK_SCRIPT = """
local path, max_id = [==[{path}]==], {max_id}
local template = [==[{template}]==]
local headers = {{{headers}}}
local threads, counter = {{}}, 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + seed)
  non200 = 0
end

function request()
  local body = string.gsub(template, "{{id}}", tostring(math.random(1, max_id)))
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non200") end
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), bad,
    e.connect + e.read + e.write + e.timeout))
end
"""


def _wrk_script(target: HttpTarget, max_id: int) -> str:
    headers = ", ".join(f'["{name}"] = "{value}"' for name, value in target.headers.items())
    return WRK_SCRIPT.format(
        path=target.path, max_id=max_id, template=target.body_template, headers=headers
    )


def _wrk(
    target: HttpTarget, max_id: int, concurrency: int, seconds: float, threads: int
) -> Measurement:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_wrk_script(target, max_id))
        script.flush()
        completed = subprocess.run(
            [
                "wrk",
                f"-t{min(threads, concurrency)}",
                f"-c{concurrency}",
                f"-d{seconds:g}s",
                "--timeout",
                "30s",
                "-s",
                script.name,
                f"http://127.0.0.1:{target.port}{target.path}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    line = next(x for x in completed.stdout.splitlines() if x.startswith("WRK_RESULT"))
    requests, micros, p50, p99, non200, socket_errors = (int(x) for x in line.split()[1:])
    return Measurement(requests, micros / 1e6, p50 / 1000, p99 / 1000, non200 + socket_errors)


# --- the raw driver ------------------------------------------------------------------------


async def _driver_worker(
    pool: asyncpg.Pool,
    sql: str,
    args: list[list[Any]],
    offset: int,
    stop_at: float,
    latencies: list[float],
) -> None:
    index = offset
    while (started := time.perf_counter()) < stop_at:
        await pool.fetch(sql, *args[index % len(args)])
        index += 1
        latencies.append(time.perf_counter() - started)


async def _raw_driver(
    dsn: str, sql: str, args: list[list[Any]], concurrency: int, seconds: float
) -> Measurement:
    pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        latencies: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _driver_worker(
                    pool, sql, args, n * len(args) // concurrency, started + seconds, latencies
                )
                for n in range(concurrency)
            )
        )
        return _measurement(latencies, time.perf_counter() - started, 0)
    finally:
        await pool.close()


def _run_async(make: Callable[[], Coroutine[Any, Any, Measurement]]) -> Measurement:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(make())


# --- servers and data ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _process(
    command: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (its output in ``log``), ready once GET /health answers; stopped
    when the block ends, however it ends."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(process, port, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited:\n{log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{process.args!r} did not start")


def _server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLEHOUSE_")}
    env.update(extra)
    return env


def _csv(rows: int) -> bytes:
    lines = ["id,user_id,kind,amount"]
    lines += [
        f"{n},{n % 1000},kind_{n % KINDS},{n * 7919 % 100_000 / 100}" for n in range(1, rows + 1)
    ]
    return ("\n".join(lines) + "\n").encode()


def _prepare_dataset(client: httpx.Client, rows: int) -> str:
    """Register, sign in, define and load ``events``; an API key with the query scope."""
    account = {"email": "bench@example.com", "password": PASSWORD}
    assert client.post("/api/v1/auth/register", json=account).status_code == 201
    token = client.post("/api/v1/auth/login", json=account).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    created = client.post("/api/v1/schemas", json={"name": "events", "fields": FIELDS})
    assert created.status_code == 201, created.text
    loaded = client.post(
        "/api/v1/schemas/events/rows", content=_csv(rows), headers={"Content-Type": "text/csv"}
    )
    assert loaded.status_code == 201, loaded.text[:500]
    assert loaded.json()["inserted"] == rows, loaded.text
    made = client.post("/api/v1/auth/api-keys", json={"name": "bench", "scopes": ["query"]})
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


async def _table_name(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        table = str(
            await connection.fetchval("SELECT table_name FROM schemas WHERE name = 'events'")
        )
        await connection.execute(f'ANALYZE "{table}"')
        return table
    finally:
        await connection.close()


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(_dsn("postgres"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _drop_database(database: str) -> None:
    """Drop the database and the owners' query roles it made: roles are cluster-wide and
    outlive it (named "<query role>_<user id in hex>", see tablehouse.core.query_roles)."""
    try:
        roles = await _owner_roles(database)
    except (asyncpg.InvalidCatalogNameError, asyncpg.UndefinedTableError):
        roles = []
    await _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    for role in roles:
        await _admin(f'DROP ROLE IF EXISTS "{role}"')


async def _owner_roles(database: str) -> list[str]:
    connection = await asyncpg.connect(_dsn(database))
    try:
        users = [row["id"].hex for row in await connection.fetch("SELECT id FROM users")]
        rows = await connection.fetch(
            "SELECT rolname FROM pg_roles "
            "WHERE rolname ~ '_[0-9a-f]{32}$' AND right(rolname, 32) = ANY($1::text[])",
            users,
        )
        return [row["rolname"] for row in rows]
    finally:
        await connection.close()


def _dsn(database: str) -> str:
    url = make_url(ADMIN_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def _check_same_answer(api: HttpTarget, floor: HttpTarget, key: int) -> None:
    """Both servers answer 200 with the same rows, before any load."""
    answers = []
    for target in (api, floor):
        response = httpx.post(
            f"http://127.0.0.1:{target.port}{target.path}",
            content=target.body(key),
            headers=target.headers,
            timeout=60,
        )
        assert response.status_code == 200, response.text[:500]
        answers.append(sorted(map(tuple, response.json()["rows"])))
    assert answers[0], "no rows"
    assert answers[0] == answers[1], answers


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    rows: int
    concurrency: int
    duration: float
    warmup: float
    loadgen: str  # "wrk" or "python"
    wrk_threads: int


def _http(target: HttpTarget, options: Options, seconds: float, *, point: bool) -> Measurement:
    max_id = options.rows if point else 1
    if options.loadgen == "wrk":
        return _wrk(target, max_id, options.concurrency, seconds, options.wrk_threads)
    ids = [random.randint(1, max_id) for _ in range(PRE_ENCODED if point else 1)]
    return _run_async(lambda: _python_http(target, ids, options.concurrency, seconds))


def _raw(dsn: str, table: str, statement: str, options: Options, seconds: float) -> Measurement:
    sql = DRIVER_SQL[statement].format(table=table)
    if statement == "point":
        args = [[random.randint(1, options.rows)] for _ in range(PRE_ENCODED)]
    else:
        args = [[]]
    return _run_async(lambda: _raw_driver(dsn, sql, args, options.concurrency, seconds))


def _targets(
    statement: str, api_port: int, floor_port: int, key: str, table: str
) -> tuple[HttpTarget, HttpTarget]:
    json = {"Content-Type": "application/json"}
    api = HttpTarget(
        api_port,
        "/api/v1/query",
        {**json, "Authorization": f"Bearer {key}"},
        _api_template(statement),
    )
    floor = HttpTarget(floor_port, "/query", json, _floor_template(statement, table))
    return api, floor


def _measured(
    name: str, statement: str, run: Callable[[float], Measurement], options: Options
) -> Measurement:
    """A warm-up, then the measurement."""
    warm = run(options.warmup)
    if warm.errors:
        print(f"warning: {warm.errors} errors in the {name} {statement} warm-up", file=sys.stderr)
    result = run(options.duration)
    print(f"  {statement:9} {name:5} {result.rate:10,.0f} req/s", file=sys.stderr)
    return result


def measure_all(
    options: Options, dsn: str, table: str, api_port: int, floor_port: int, key: str
) -> dict[tuple[str, str], Measurement]:
    results: dict[tuple[str, str], Measurement] = {}
    for statement in ("point", "aggregate"):
        api, floor = _targets(statement, api_port, floor_port, key, table)
        _check_same_answer(api, floor, random.randint(1, options.rows))
        point = statement == "point"
        runs: dict[str, Callable[[float], Measurement]] = {
            "raw": partial(_raw, dsn, table, statement, options),
            "floor": partial(_http, floor, options, point=point),
            "api": partial(_http, api, options, point=point),
        }
        for name, run in runs.items():
            results[(statement, name)] = _measured(name, statement, run, options)
    return results


def run(options: Options, database: str, folder: Path) -> dict[tuple[str, str], Measurement]:
    dsn = _dsn(database)
    database_url = make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(False)
    migrations.upgrade(load_settings(_env_file=None, database_url=database_url, data_dir=folder))
    api_port, floor_port = _free_port(), _free_port()
    api_env = _server_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(folder),
        LOG_LEVEL="WARNING",
        # One user sends every request: let it run as many queries at once as there are
        # connections (the per-user check still runs), or the default of 4 answers 429.
        QUERY_MAX_CONCURRENT_PER_USER=str(max(options.concurrency, 4)),
        # The floor's pool: 10 connections, no overflow. SQLAlchemy closes an overflow
        # connection as soon as it is returned, so under steady load above the pool size
        # every request would open a new PostgreSQL connection (a backend process).
        DB_POOL_SIZE="10",
        DB_MAX_OVERFLOW="0",
    )
    api_command = [sys.executable, "-m", "tablehouse", "serve", "--port", str(api_port)]
    with _process(api_command, api_env, api_port, folder / "api.log"):
        client = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=600)
        key = _prepare_dataset(client, options.rows)
        table = asyncio.run(_table_name(dsn))
        floor_command = [sys.executable, str(FLOOR_APP), "--dsn", dsn, "--port", str(floor_port)]
        with _process(floor_command, _server_env(), floor_port, folder / "floor.log"):
            return measure_all(options, dsn, table, api_port, floor_port, key)


# --- report --------------------------------------------------------------------------------


def report(options: Options, results: dict[tuple[str, str], Measurement], wall: float) -> bool:
    """Print the markdown table; whether the run is valid (no errors)."""
    print(
        f"{datetime.now(UTC):%Y-%m-%d} · {platform.platform()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · load generator: {options.loadgen} · "
        f"{options.concurrency} connections · {options.duration:g} s per case "
        f"(+{options.warmup:g} s warm-up) · {options.rows:,} rows · wall time {wall:.0f} s\n"
    )
    print("| statement | target | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|")
    labels = {
        "raw": "asyncpg, no HTTP",
        "floor": "floor (FastAPI + asyncpg)",
        "api": "Tablehouse API",
    }
    for (statement, name), m in results.items():
        cells = [f"{m.rate:,.0f}", f"{m.p50_ms:.2f}", f"{m.p99_ms:.2f}", str(m.errors)]
        print(f"| {statement} | {labels[name]} | {' | '.join(cells)} |")
    print("\n| ratio | point | aggregate |")
    print("|---|---:|---:|")
    for label, top, bottom in (
        ("API / floor", "api", "floor"),
        ("API / raw driver", "api", "raw"),
        ("floor / raw driver", "floor", "raw"),
    ):
        ratios = [
            results[(s, top)].rate / results[(s, bottom)].rate for s in ("point", "aggregate")
        ]
        print(f"| {label} | {ratios[0]:.2f}x | {ratios[1]:.2f}x |")
    errors = sum(m.errors for m in results.values())
    point_ratio = results[("point", "api")].rate / results[("point", "floor")].rate
    met = "met" if point_ratio >= 0.5 else "NOT met"
    print(f"\nTarget: API point-query throughput >= 0.5x the floor: {point_ratio:.2f}x, {met}.")
    if errors:
        print(f"INVALID RUN: {errors} requests failed or answered other than 200.")
    return errors == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32, help="connections (or tasks)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--wrk-threads", type=int, default=1)
    arguments = parser.parse_args()
    loadgen = arguments.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    elif loadgen == "wrk" and shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH")
    whole = arguments.duration.is_integer() and arguments.warmup.is_integer()
    if loadgen == "wrk" and not whole:
        sys.exit("wrk takes whole seconds: give --duration and --warmup as integers")
    options = Options(
        rows=arguments.rows,
        concurrency=arguments.concurrency,
        duration=arguments.duration,
        warmup=arguments.warmup,
        loadgen=loadgen,
        wrk_threads=arguments.wrk_threads,
    )
    started = time.perf_counter()
    database = f"th_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f"CREATE DATABASE {database}"))
    try:
        with tempfile.TemporaryDirectory() as folder:
            results = run(options, database, Path(folder))
    finally:
        asyncio.run(_drop_database(database))
    if not report(options, results, time.perf_counter() - started):
        sys.exit(1)


if __name__ == "__main__":
    main()
