"""Tablehouse against its peer Datasette on the same rows, alternating targets in one run.

Three servers, one process each, hold the same ``events`` table: N rows (default 100,000) of
``id`` (integer key), ``user_id``, ``kind`` (10 values) and ``amount`` (float), the rows of
``bench/query.py``:

- **datasette**:  Datasette 0.65 (a dev dependency) serving a SQLite file built from those
  rows (``events(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT, amount
  REAL)``) with ``datasette serve -i bench.db --port P`` and its defaults otherwise (3 SQL
  threads, 1 s time limit, uvicorn with uvloop + httptools, its access log on: it has no
  switch for it). Immutable (``-i``) because that is how Datasette's documentation says to
  serve a file that will not change, which is what a user publishing a read-only SQL API does:
  no file locking and no change checks. It is the peer's best configuration for this load,
  so a ratio in Tablehouse's favour is not one won against a handicapped peer.
- **sqlite**:     ``tablehouse serve`` on its embedded default (SQLite in ``DATA_DIR``);
- **postgresql**: ``tablehouse serve`` on a throwaway PostgreSQL database (``ANALYZE``d).

Both Tablehouse servers are started as ``bench/hot_paths.py`` starts one (its ``api_env``):
``QUERY_MAX_CONCURRENT_PER_USER`` raised to the number of connections (one user sends every
query; the check still runs), ``LOG_LEVEL=WARNING``, ``DB_POOL_SIZE=10`` (the default) with
``DB_MAX_OVERFLOW=0``, everything else default: **analytics on**, every query logged into
embedded chDB in each server's own temporary ``DATA_DIR``. The rows are loaded through the
API (CSV), as a user would.

Three requests, ``id`` random in 1..N:

- **point**:     ``SELECT * FROM events WHERE id = :id``. Datasette: its JSON SQL API,
  ``GET /bench.json?sql=...&id=N&_shape=array``; Tablehouse: ``POST /api/v1/query`` with an
  API key (query scope).
- **row**:       the row by key. Datasette: ``GET /bench/events/N.json?_shape=array``;
  Tablehouse: ``GET /api/v1/schemas/events/rows/N`` with an access token.
- **aggregate**: ``SELECT kind, count(*), avg(amount) FROM events GROUP BY kind``, the same ways.

Load: ``wrk`` with ``bench/hot_paths.py``'s Lua script, N connections (default 32). For each
request, every round runs each target in turn (round 1 in the order of ``--targets``, round 2
reversed, and so on), each run after a warm-up of its own and once the server is idle again
(the requests of the connections wrk closed are still served after it stops). Before any
load every target must give the same rows for one id (and the same groups); any answer other
than 200, a socket error, or a run that completes no request makes the run invalid (exit 1).

Reported per request and target: requests/s over all rounds and its ratio to Datasette; the
server process's CPU time (user + system, ``/proc/<pid>/stat``) over its measured runs per
request; p50 and p99 (the mean of the rounds). Per server: resident memory (``VmRSS``) once
it answers ``/health`` (before any rows are loaded) and after the load, and its peak
(``VmHWM``). Per run: the load average, and the other load, the machine's busy CPU time
(``/proc/stat``) during the measurements less the servers', wrk's, this script's and the
PostgreSQL server's processes' (reported apart: on a shared machine they serve others too).

Needs ``wrk`` and, for the postgresql target, a PostgreSQL server (``TEST_POSTGRES_URL``).

Run: ``uv run python bench/peers.py [--duration 10] [--warmup 3] [--rounds 2]
[--concurrency 32] [--rows 100000] [--cases point,row,aggregate]
[--targets datasette,sqlite,postgresql]``
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import platform
import resource
import secrets
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import hot_paths  # bench/hot_paths.py: this script's folder is first on sys.path
import httpx
import query as query_bench
from hot_paths import Options, Request, Run, Summary
from sqlalchemy.engine import make_url

from tablehouse.config import load_settings
from tablehouse.core import migrations

CASES = ("point", "row", "aggregate")
TARGETS = ("datasette", "sqlite", "postgresql")
DATASETTE = version("datasette")
COLUMNS = ("postgresql", "sqlite", "datasette")  # the table, left to right
LABELS = {
    "postgresql": "Tablehouse PostgreSQL",
    "sqlite": "Tablehouse SQLite (embedded default)",
    "datasette": f"Datasette {DATASETTE} (same rows, SQLite)",
}
REQUESTS = {
    "point": "point query `select * from events where id = :id`",
    "row": "row by key",
    "aggregate": "aggregate `kind, count(*), avg(amount) group by kind`",
}
PEER_DATABASE = "bench"  # the file's stem, Datasette's name for the database
EVENTS_TABLE = (
    "CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT, amount REAL)"
)
TICK = os.sysconf("SC_CLK_TCK")


# --- servers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    pid: int
    requests: dict[str, Request]
    started_rss: int  # bytes, once it answers


def memory(pid: int) -> tuple[int, int]:
    """A process's resident memory now and at its peak (VmRSS, VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def write_peer_file(path: Path, rows: int) -> None:
    """bench/query.py's rows (its CSV, typed as the dataset's fields) in a SQLite file."""
    lines = csv.reader(io.StringIO(query_bench._csv(rows).decode()))
    next(lines)  # the header
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(EVENTS_TABLE)
        connection.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            ((int(key), int(user), kind, float(amount)) for key, user, kind, amount in lines),
        )


def peer_requests(port: int, pid: int) -> dict[str, Request]:
    def sql(statement: str, params: str = "") -> Request:
        query = urlencode({"sql": query_bench.API_SQL[statement]})
        path = f"/{PEER_DATABASE}.json?{query}{params}&_shape=array"
        return Request(port, "GET", path, {}, pid=pid)

    row = f"/{PEER_DATABASE}/events/{{id}}.json?_shape=array"
    return {
        "point": sql("point", "&id={id}"),
        "row": Request(port, "GET", row, {}, pid=pid),
        "aggregate": sql("aggregate"),
    }


def tablehouse_requests(port: int, pid: int, token: str, api_key: str) -> dict[str, Request]:
    bearer = {"Authorization": f"Bearer {token}"}
    key = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def query(statement: str) -> Request:
        return Request(
            port, "POST", "/api/v1/query", key, query_bench._api_template(statement), pid
        )

    return {
        "point": query("point"),
        "row": Request(port, "GET", "/api/v1/schemas/events/rows/{id}", bearer, pid=pid),
        "aggregate": query("aggregate"),
    }


@contextmanager
def _datasette(options: Options, folder: Path) -> Iterator[Server]:
    database = folder / f"{PEER_DATABASE}.db"
    write_peer_file(database, options.rows)
    port = query_bench._free_port()
    command = [sys.executable, "-m", "datasette", "serve", "-i", str(database)]
    command += ["--port", str(port)]
    env = query_bench._server_env()
    with query_bench._process(command, env, port, folder / "datasette.log") as process:
        yield Server(process.pid, peer_requests(port, process.pid), memory(process.pid)[0])


@contextmanager
def _tablehouse(options: Options, database_url: str, folder: Path) -> Iterator[Server]:
    migrations.upgrade(load_settings(_env_file=None, database_url=database_url, data_dir=folder))
    port = query_bench._free_port()
    command = [sys.executable, "-m", "tablehouse", "serve", "--port", str(port)]
    env = hot_paths.api_env(options, database_url, folder, secrets.token_urlsafe(48))
    with query_bench._process(command, env, port, folder / "tablehouse.log") as process:
        started = memory(process.pid)[0]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            token, api_key = hot_paths.prepare(client, options.rows)
        yield Server(process.pid, tablehouse_requests(port, process.pid, token, api_key), started)


@contextmanager
def _server(target: str, options: Options, folder: Path, dsn: str) -> Iterator[Server]:
    folder.mkdir()
    if target == "datasette":
        with _datasette(options, folder) as server:
            yield server
    elif target == "sqlite":  # the embedded default's own path, given explicitly
        with _tablehouse(options, f"sqlite+aiosqlite:///{folder / 'tablehouse.db'}", folder) as s:
            yield s
    else:
        url = make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(False)
        with _tablehouse(options, url, folder) as server:
            asyncio.run(query_bench._table_name(dsn))  # ANALYZEs the dataset's table
            yield server


# --- the run -------------------------------------------------------------------------------


def rows_of(answer: Any) -> list[tuple[Any, ...]]:
    """The rows in any target's answer, sorted, floats to 6 places (PostgreSQL's avg may
    differ from SQLite's in the last bits): the query API's ``{"rows": [[...]]}``, the row
    API's object, or Datasette's ``_shape=array`` list of objects."""
    if isinstance(answer, dict):
        found = answer["rows"] if "rows" in answer else [list(answer.values())]
    else:
        found = [list(row.values()) for row in answer]
    rounded = (tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in found)
    return sorted(rounded)


def _check_same_rows(case: str, servers: dict[str, Server], key: int) -> None:
    answers = {t: rows_of(hot_paths.answer(s.requests[case], key)) for t, s in servers.items()}
    first = next(iter(answers.values()))
    if not first or any(rows != first for rows in answers.values()):
        raise RuntimeError(f"{case}: the targets answer differently for id {key}: {answers}")


def _measure(case: str, servers: dict[str, Server], options: Options) -> dict[str, list[Run]]:
    _check_same_rows(case, servers, options.rows // 2 + 1)
    runs: dict[str, list[Run]] = {target: [] for target in servers}
    for number in range(1, options.rounds + 1):
        order = list(servers) if number % 2 else list(reversed(servers))
        for target in order:
            label = f"{case} {target} ({number})"
            runs[target].append(hot_paths.measured(servers[target].requests[case], options, label))
    return runs


def _busy_seconds(pids: list[int]) -> tuple[float, float, float]:
    """CPU seconds so far: the machine's busy time; the servers' and this script's with its
    children (wrk); the PostgreSQL server's processes'."""
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    machine = (sum(cpu[:3]) + cpu[5] + cpu[6]) / TICK  # not idle, iowait or steal
    own = sum(hot_paths.cpu_seconds(pid) for pid in pids)
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    postgres = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(") ")
        except OSError:
            continue  # it ended
        if name.endswith("(postgres"):
            fields = rest.split()
            postgres += (int(fields[11]) + int(fields[12])) / TICK
    return machine, own, postgres


@dataclass(frozen=True, slots=True)
class Outcome:
    runs: dict[str, dict[str, list[Run]]]  # request -> target -> its runs
    memory: dict[str, tuple[int, int, int]]  # target -> RSS after start, after load, peak
    other_cores: float  # the machine's other load during the measurements, in cores
    postgres_cores: float  # the PostgreSQL server's processes (ours and anyone else's)
    load: tuple[float, float]  # 1-minute load average before and after


def run(options: Options, targets: tuple[str, ...], dsn: str) -> Outcome:
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        servers = {
            target: stack.enter_context(_server(target, options, Path(folder) / target, dsn))
            for target in targets
        }
        pids = [server.pid for server in servers.values()]
        load, wall, before = os.getloadavg()[0], time.perf_counter(), _busy_seconds(pids)
        runs = {case: _measure(case, servers, options) for case in options.cases}
        after, wall = _busy_seconds(pids), time.perf_counter() - wall
        machine, own, postgres = (a - b for a, b in zip(after, before, strict=True))
        rss = {t: (s.started_rss, *memory(s.pid)) for t, s in servers.items()}
        other = (machine - own - postgres) / wall
        return Outcome(runs, rss, other, postgres / wall, (load, os.getloadavg()[0]))


# --- report --------------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def _ratio(rate: float, peer: float) -> str:
    return f"{rate / peer:.2f}x" if peer else "n/a"


def _cell(target: str, summary: Summary, peer: Summary | None) -> str:
    ratio = f" ({_ratio(summary.rate, peer.rate)})" if peer and target != "datasette" else ""
    return (
        f"{summary.rate:,.0f} req/s{ratio}, {summary.cpu_us:,.0f} µs CPU/req, "
        f"p50 {summary.p50:.1f} / p99 {summary.p99:.1f} ms"
    )


def _summaries(outcome: Outcome) -> dict[str, dict[str, Summary]]:
    return {
        case: {target: Summary.of(runs) for target, runs in by_target.items()}
        for case, by_target in outcome.runs.items()
    }


def _table(outcome: Outcome, summaries: dict[str, dict[str, Summary]]) -> None:
    columns = [target for target in COLUMNS if target in outcome.memory]
    print(f"| request | {' | '.join(LABELS[target] for target in columns)} |")
    print(f"|---|{'---:|' * len(columns)}")
    for case, by_target in summaries.items():
        peer = by_target.get("datasette")
        cells = [_cell(target, by_target[target], peer) for target in columns]
        print(f"| {REQUESTS[case]} | {' | '.join(cells)} |")
    rss = [outcome.memory[target] for target in columns]
    cells = [f"{_mib(start)} → {_mib(end)} MiB (peak {_mib(peak)})" for start, end, peak in rss]
    print(f"| resident memory after start → after the load | {' | '.join(cells)} |")


def _rounds(outcome: Outcome, summaries: dict[str, dict[str, Summary]]) -> int:
    """The ratio in each round and the errors; their total, a run that completed no
    request counted as one."""
    print("\n| request | target | x Datasette, each round | p99 / p50 | errors |")
    print("|---|---|---|---:|---:|")
    errors = 0
    for case, by_target in outcome.runs.items():
        peer = by_target.get("datasette")
        for target, runs in by_target.items():
            summary = summaries[case][target]
            failed = summary.errors + sum(1 for run in runs if not run.load.requests)
            errors += failed
            rounds = "-"
            if peer and target != "datasette":
                pairs = zip(runs, peer, strict=True)
                rounds = ", ".join(_ratio(a.load.rate, b.load.rate) for a, b in pairs)
            tail = summary.p99 / summary.p50 if summary.p50 else float("nan")
            print(f"| {case} | {target} | {rounds} | {tail:.1f} | {failed} |")
    return errors


def report(options: Options, outcome: Outcome, pg_version: str, wall: float) -> bool:
    postgres = f"PostgreSQL {pg_version} on the same machine · " if pg_version else ""
    print(
        f"{datetime.now(UTC):%Y-%m-%d} · {platform.platform()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {postgres}Datasette {DATASETTE} · "
        f"wrk {hot_paths.wrk_version()}, {options.concurrency} connections · "
        f"{options.rounds} rounds of {options.duration} s per target (+{options.warmup} s "
        f"warm-up each) · {options.rows:,} rows · load average {outcome.load[0]:.2f} before, "
        f"{outcome.load[1]:.2f} after · during the measurements, other load "
        f"{outcome.other_cores:.2f} cores besides PostgreSQL's {outcome.postgres_cores:.2f} "
        f"(ours and others') · wall time {wall:.0f} s\n"
    )
    summaries = _summaries(outcome)
    _table(outcome, summaries)
    errors = _rounds(outcome, summaries)
    if errors:
        print(
            f"\nINVALID RUN: {errors} requests failed or answered other than 200, or runs "
            "completed no request at all."
        )
    return errors == 0


def _options() -> tuple[Options, tuple[str, ...]]:
    parser = hot_paths.load_parser(__doc__.splitlines()[0], CASES, "passes over the targets")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    arguments = parser.parse_args()
    targets = hot_paths.choices(parser, arguments.targets, TARGETS)
    return hot_paths.load_options(parser, arguments, CASES), targets


def main() -> None:
    options, targets = _options()
    started = time.perf_counter()
    if "postgresql" not in targets:
        outcome, pg_version = run(options, targets, ""), ""
    else:
        database = f"th_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(query_bench._admin(f"CREATE DATABASE {database}"))
        try:
            dsn = query_bench._dsn(database)
            pg_version = asyncio.run(hot_paths.postgres_version(dsn))
            outcome = run(options, targets, dsn)
        finally:
            asyncio.run(query_bench._drop_database(database))
    if not report(options, outcome, pg_version, time.perf_counter() - started):
        sys.exit(1)


if __name__ == "__main__":
    main()
