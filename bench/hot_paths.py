"""The hot paths of the API against a minimal FastAPI + asyncpg floor, in one run.

Four requests, each against ``tablehouse serve`` (the API) and ``bench/floor_app.py`` (the
floor), both served the same way (uvicorn, one worker, uvloop + httptools, no access log),
on the same PostgreSQL database, with the same credential:

- **me**:        ``GET /api/v1/users/me`` with an access token (JWT) — floor ``GET /users/me``
  (the token checked with PyJWT as Tablehouse checks it, then the session and its user in
  one query);
- **row**:       ``GET /api/v1/schemas/events/rows/{id}`` with the same token, ``id`` random
  — floor ``GET /rows/{id}`` (the same check, then the row from a table it knows);
- **point**:     ``POST /api/v1/query`` ``SELECT * FROM events WHERE id = :id`` with an API key
  (query scope) — floor ``POST /auth/query`` (the key and its user in one query, then the
  statement with ``pool.fetch``);
- **aggregate**: the same with ``SELECT kind, count(*), avg(amount) FROM events GROUP BY kind``.

Targets (issue 8): me >= 0.6x the floor with p99 <= 4x p50; row and point >= 0.5x the floor.

The load comes from ``wrk`` (``apt-get install wrk``), N connections (default 32), one Lua
script per request kind (ids drawn in Lua, every non-200 answer counted). For each request
the API and the floor alternate: round 1 floor then API, round 2 API then floor, and so on,
each run after a warm-up of its own and once the server is idle again; a request's figures
add up its rounds (requests/s over all of them; p50 and p99 their mean). Before any load
both servers must give the same answer; a run with errors is reported as invalid (exit code 1).

Needs a PostgreSQL server (``TEST_POSTGRES_URL``, default postgres@127.0.0.1:5432). Creates
and drops its own database; the dataset ``events`` (N rows, default 100,000) is loaded through
the API. The API runs with ``DB_POOL_SIZE=10`` and ``DB_MAX_OVERFLOW=0`` (the floor's pool),
``QUERY_MAX_CONCURRENT_PER_USER`` raised to the number of connections (one user sends every
query; the check still runs), ``LOG_LEVEL=WARNING`` and otherwise default settings (analytics
on, into embedded chDB in a temporary ``DATA_DIR``).

Run: ``uv run python bench/hot_paths.py [--duration 10] [--warmup 3] [--rounds 2]
[--concurrency 32] [--rows 100000] [--cases me,row,point,aggregate]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import query as query_bench  # bench/query.py: this script's folder is first on sys.path
from query import Measurement
from sqlalchemy.engine import make_url

from tablehouse.config import load_settings
from tablehouse.core import migrations

CASES = ("me", "row", "point", "aggregate")
TARGETS: dict[str, float] = {"me": 0.6, "row": 0.5, "point": 0.5}
TAIL_TARGET = 4.0  # me: p99 at most this many times p50
SETTLE_SECONDS = 1.0  # after a load, for requests of connections wrk closed to finish
IDLE_WINDOW, IDLE_CPU = 0.5, 0.02  # then until the server uses under 4 % of a core, ...
SETTLE_LIMIT = 120.0  # ... for at most this long


# --- what is sent --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One request kind for wrk; ``{id}`` in the path or body is a random id in 1..max_id."""

    port: int
    method: str
    path: str
    headers: dict[str, str]
    body: str = ""
    pid: int = 0  # the server's process, whose CPU time is read around each run

    def url(self, key: int) -> str:
        return f"http://127.0.0.1:{self.port}{self.path.replace('{id}', str(key))}"

    def content(self, key: int) -> bytes | None:
        return self.body.replace("{id}", str(key)).encode() if self.body else None


@dataclass(frozen=True, slots=True)
class Pair:
    api: Request
    floor: Request
    same: Callable[[Any, Any], bool]  # the two decoded answers say the same


WRK_SCRIPT = """
local method, path, body, max_id = "{method}", [==[{path}]==], [==[{body}]==], {max_id}
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
  local id = tostring(math.random(1, max_id))
  local this_path = (string.gsub(path, "{{id}}", id))
  local this_body = nil
  if body ~= "" then this_body = (string.gsub(body, "{{id}}", id)) end
  return wrk.format(method, this_path, headers, this_body)
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


def _wrk(request: Request, options: Options, seconds: float) -> Measurement:
    headers = ", ".join(f'["{name}"] = "{value}"' for name, value in request.headers.items())
    script = WRK_SCRIPT.format(
        method=request.method,
        path=request.path,
        body=request.body,
        max_id=options.rows,
        headers=headers,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as file:
        file.write(script)
        file.flush()
        completed = subprocess.run(
            [
                "wrk",
                f"-t{min(options.wrk_threads, options.concurrency)}",
                f"-c{options.concurrency}",
                f"-d{seconds:g}s",
                "--timeout",
                "30s",
                "-s",
                file.name,
                f"http://127.0.0.1:{request.port}/",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    line = next(x for x in completed.stdout.splitlines() if x.startswith("WRK_RESULT"))
    requests, micros, p50, p99, non200, socket_errors = (int(x) for x in line.split()[1:])
    return Measurement(requests, micros / 1e6, p50 / 1000, p99 / 1000, non200 + socket_errors)


def answer(request: Request, key: int) -> Any:
    response = httpx.request(
        request.method,
        request.url(key),
        content=request.content(key),
        headers=request.headers,
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{request.url(key)} answered {response.status_code}: {response.text}")
    return response.json()


def _same_user(api: Any, floor: Any) -> bool:
    return bool(api["id"] == floor["id"] and api["email"] == floor["email"])


def _same_row(api: Any, floor: Any) -> bool:
    return bool(api == floor)


def _same_rows(api: Any, floor: Any) -> bool:
    ours = sorted(map(tuple, api["rows"]))
    return bool(ours) and ours == sorted(map(tuple, floor["rows"]))


# --- servers and data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str  # an access token
    api_key: str  # query scope
    table: str  # the physical table of ``events``


def prepare(client: httpx.Client, rows: int) -> tuple[str, str]:
    """The dataset through the API (bench/query.py's); an access token and an API key."""
    api_key = query_bench._prepare_dataset(client, rows)  # it signs in with a token
    return client.headers["Authorization"].removeprefix("Bearer "), api_key


@dataclass(frozen=True, slots=True)
class Server:
    port: int
    pid: int


def _pairs(api: Server, floor: Server, credentials: Credentials) -> dict[str, Pair]:
    api_port, floor_port = api.port, floor.port
    token = {"Authorization": f"Bearer {credentials.token}"}
    key = {"Authorization": f"Bearer {credentials.api_key}", "Content-Type": "application/json"}
    pairs = {
        "me": Pair(
            Request(api_port, "GET", "/api/v1/users/me", token),
            Request(floor_port, "GET", "/users/me", token),
            _same_user,
        ),
        "row": Pair(
            Request(api_port, "GET", "/api/v1/schemas/events/rows/{id}", token),
            Request(floor_port, "GET", "/rows/{id}", token),
            _same_row,
        ),
    }
    for statement in ("point", "aggregate"):
        pairs[statement] = Pair(
            Request(api_port, "POST", "/api/v1/query", key, query_bench._api_template(statement)),
            Request(
                floor_port,
                "POST",
                "/auth/query",
                key,
                query_bench._floor_template(statement, credentials.table),
            ),
            _same_rows,
        )
    return {
        name: Pair(replace(pair.api, pid=api.pid), replace(pair.floor, pid=floor.pid), pair.same)
        for name, pair in pairs.items()
    }


def api_env(options: Options, database_url: str, folder: Path, jwt_secret: str) -> dict[str, str]:
    return query_bench._server_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(folder),
        LOG_LEVEL="WARNING",
        JWT_SECRET=jwt_secret,
        ACCESS_TOKEN_TTL_MINUTES="240",  # outlives the run
        # One user sends every query: as many at once as there are connections.
        QUERY_MAX_CONCURRENT_PER_USER=str(max(options.concurrency, 4)),
        # The floor's pool, without overflow (bench/query.py says why).
        DB_POOL_SIZE=str(query_bench.POOL_SIZE),
        DB_MAX_OVERFLOW="0",
    )


@contextmanager
def _servers(options: Options, dsn: str, folder: Path) -> Iterator[dict[str, Pair]]:
    database_url = make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(False)
    migrations.upgrade(load_settings(_env_file=None, database_url=database_url, data_dir=folder))
    jwt_secret = secrets.token_urlsafe(48)
    api_port, floor_port = query_bench._free_port(), query_bench._free_port()
    api_command = [sys.executable, "-m", "tablehouse", "serve", "--port", str(api_port)]
    env = api_env(options, database_url, folder, jwt_secret)
    with query_bench._process(api_command, env, api_port, folder / "api.log") as api:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=600) as client:
            token, api_key = prepare(client, options.rows)
        table = asyncio.run(query_bench._table_name(dsn))
        floor_command = [
            *(sys.executable, str(query_bench.FLOOR_APP), "--dsn", dsn),
            *("--port", str(floor_port), "--rows-table", table),
        ]
        floor_env = query_bench._server_env(JWT_SECRET=jwt_secret)
        with query_bench._process(
            floor_command, floor_env, floor_port, folder / "floor.log"
        ) as floor:
            yield _pairs(
                Server(api_port, api.pid),
                Server(floor_port, floor.pid),
                Credentials(token, api_key, table),
            )


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    rows: int
    concurrency: int
    duration: int
    warmup: int
    rounds: int
    wrk_threads: int
    cases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Run:
    load: Measurement
    cpu_seconds: float  # the server process's CPU time (user + system) during the load


@dataclass(frozen=True, slots=True)
class Result:
    api: list[Run]
    floor: list[Run]


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int) -> None:
    """Wait for the server to be idle. The requests of the connections wrk closed are still
    served after it stops: when they take seconds (an aggregate on a busy machine), a fixed
    pause would leave a backlog that the next run pays for without counting it."""
    time.sleep(SETTLE_SECONDS)
    deadline = time.monotonic() + SETTLE_LIMIT
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(IDLE_WINDOW)
        if cpu_seconds(pid) - before < IDLE_CPU:
            return
    print(f"warning: process {pid} still busy after {SETTLE_LIMIT:g} s", file=sys.stderr)


def measured(request: Request, options: Options, label: str) -> Run:
    warm = _wrk(request, options, options.warmup)
    if warm.errors:
        print(f"warning: {warm.errors} errors in the {label} warm-up", file=sys.stderr)
    settle(request.pid)
    cpu = cpu_seconds(request.pid)
    result = _wrk(request, options, options.duration)
    run = Run(result, cpu_seconds(request.pid) - cpu)
    per_request = run.cpu_seconds / max(result.requests, 1) * 1e6
    print(f"  {label:22} {result.rate:8,.0f} req/s {per_request:6,.0f} µs CPU", file=sys.stderr)
    settle(request.pid)
    return run


def _measure(name: str, pair: Pair, options: Options) -> Result:
    key = options.rows // 2 + 1
    if not pair.same(answer(pair.api, key), answer(pair.floor, key)):
        raise RuntimeError(f"{name}: the API and the floor answer differently")
    result = Result([], [])
    for round_number in range(1, options.rounds + 1):
        order = ("floor", "api") if round_number % 2 else ("api", "floor")
        for target in order:
            request = pair.api if target == "api" else pair.floor
            found = measured(request, options, f"{name} {target} (round {round_number})")
            (result.api if target == "api" else result.floor).append(found)
    return result


def run(options: Options, dsn: str) -> dict[str, Result]:
    with tempfile.TemporaryDirectory() as folder, _servers(options, dsn, Path(folder)) as pairs:
        return {name: _measure(name, pairs[name], options) for name in options.cases}


# --- report --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    rate: float
    p50: float
    p99: float
    errors: int
    cpu_us: float  # server CPU per request

    @classmethod
    def of(cls, runs: list[Run]) -> Summary:
        loads = [run.load for run in runs]
        requests = sum(m.requests for m in loads)
        return cls(
            rate=requests / sum(m.seconds for m in loads),
            p50=sum(m.p50_ms for m in loads) / len(loads),
            p99=sum(m.p99_ms for m in loads) / len(loads),
            errors=sum(m.errors for m in loads),
            cpu_us=sum(run.cpu_seconds for run in runs) / max(requests, 1) * 1e6,
        )


async def postgres_version(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return str(await connection.fetchval("SHOW server_version")).split()[0]
    finally:
        await connection.close()


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).split()[1]


def _verdict(name: str, ratio: float, api: Summary) -> str:
    if name not in TARGETS:
        return "(no target)"
    met = ratio >= TARGETS[name]
    text = f">= {TARGETS[name]}x: {'met' if met else 'NOT met'}"
    if name == "me":
        tail = api.p99 / api.p50
        text += f"; p99/p50 {tail:.1f} <= {TAIL_TARGET:g}: "
        text += "met" if tail <= TAIL_TARGET else "NOT met"
    return text


def report(options: Options, results: dict[str, Result], pg_version: str, wall: float) -> bool:
    print(
        f"{datetime.now(UTC):%Y-%m-%d} · {platform.platform()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · PostgreSQL {pg_version} on the same machine · "
        f"wrk {wrk_version()}, {options.concurrency} connections · {options.rounds} rounds "
        f"of {options.duration} s per target (+{options.warmup} s warm-up each) · "
        f"{options.rows:,} rows · wall time {wall:.0f} s\n"
    )
    print("| request | target | requests/s | p50 ms | p99 ms | server CPU µs/request | errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    errors = 0
    for name, result in results.items():
        for label, runs in (("floor", result.floor), ("Tablehouse API", result.api)):
            s = Summary.of(runs)
            errors += s.errors
            cells = f"{s.rate:,.0f} | {s.p50:.2f} | {s.p99:.2f} | {s.cpu_us:,.0f} | {s.errors}"
            print(f"| {name} | {label} | {cells} |")
    print("\n| request | API / floor | each round | target |")
    print("|---|---:|---|---|")
    for name, result in results.items():
        api, floor = Summary.of(result.api), Summary.of(result.floor)
        rounds = ", ".join(
            f"{a.load.rate / f.load.rate:.2f}x"
            for a, f in zip(result.api, result.floor, strict=True)
        )
        ratio = api.rate / floor.rate
        print(f"| {name} | {ratio:.2f}x | {rounds} | {_verdict(name, ratio, api)} |")
    if errors:
        print(f"\nINVALID RUN: {errors} requests failed or answered other than 200.")
    return errors == 0


def load_parser(description: str, cases: tuple[str, ...], rounds: str) -> argparse.ArgumentParser:
    """The options of a wrk-driven comparison (this script's and bench/peers.py's);
    ``rounds`` says what a round alternates."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds before each")
    parser.add_argument("--rounds", type=int, default=2, help=rounds)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--cases", default=",".join(cases), help="comma-separated")
    return parser


def choices(
    parser: argparse.ArgumentParser, given: str, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in given.split(",") if name.strip())
    if unknown := sorted(set(chosen) - set(allowed)):
        parser.error(f"unknown: {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


def load_options(
    parser: argparse.ArgumentParser, arguments: argparse.Namespace, cases: tuple[str, ...]
) -> Options:
    chosen = choices(parser, arguments.cases, cases)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH (apt-get install wrk)")
    return Options(
        rows=arguments.rows,
        concurrency=arguments.concurrency,
        duration=arguments.duration,
        warmup=arguments.warmup,
        rounds=arguments.rounds,
        wrk_threads=arguments.wrk_threads,
        cases=chosen,
    )


def _options() -> Options:
    parser = load_parser(__doc__.splitlines()[0], CASES, "API/floor alternations")
    return load_options(parser, parser.parse_args(), CASES)


def main() -> None:
    options = _options()
    started = time.perf_counter()
    database = f"th_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(query_bench._admin(f"CREATE DATABASE {database}"))
    try:
        dsn = query_bench._dsn(database)
        pg_version = asyncio.run(postgres_version(dsn))
        results = run(options, dsn)
    finally:
        asyncio.run(query_bench._drop_database(database))
    if not report(options, results, pg_version, time.perf_counter() - started):
        sys.exit(1)


if __name__ == "__main__":
    main()
