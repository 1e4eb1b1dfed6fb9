"""Analytics cost: API throughput with analytics on vs off, and the writer's rate into chDB.

Two measurements (the issue's targets in brackets):

- **API, analytics on vs off** [on >= 0.95x off]: a real ``tablehouse serve`` process with a
  temporary ``DATA_DIR`` (``tablehouse db init`` first, which also creates the analytics
  tables), a dataset ``events`` of N rows loaded through the API, then ``POST /api/v1/query``
  with a point query (``SELECT * FROM events WHERE id = :id``, ``id`` random), each run with
  the same load after a warm-up (8 s by default: long enough to hold the writer's first
  insert, which is slow once, as clickhouse-connect then imports pandas). Every query leaves
  one ``QueryExecuted`` event: with ``ANALYTICS_ENABLED=true`` it goes through the buffered
  writer into embedded chDB (``chdb:///<DATA_DIR>/analytics``); with ``false``, to the log
  sink (filtered out at ``LOG_LEVEL=WARNING``). Runs alternate off, on, off, on, ...
  (``--rounds``), one server process per run, on the same database. After each "on" run the
  server is stopped with SIGTERM (which flushes the writer) and, once it has exited, the
  benchmark opens the chDB path itself and counts the new ``query_logs`` rows; they must
  equal the number of queries the server answered (its own ``/metrics`` counter for
  ``POST /api/v1/query``, read just before the stop; warm-up and the check before the load
  included). It also reports how many inserts the writer made (the table's block number).
  The database is PostgreSQL by default (``TEST_POSTGRES_URL``, default
  postgres@127.0.0.1:5432; a database of its own, dropped at the end), with the pool of
  ``bench/query.py``: ``DB_POOL_SIZE=10``, ``DB_MAX_OVERFLOW=0``. ``--database sqlite`` uses a
  file in ``DATA_DIR`` instead, with the same pool.
- **Writer into chDB** [>= 50,000 events/s]: in this process, an ``EventWriter`` on a real
  ``AnalyticsStore`` (embedded chDB, on the API runs' path as chDB opens one path per
  process, in a database of its own; tables created by ``prepare``) is handed N
  ``QueryExecuted`` events as fast as the loop allows (``emit`` in runs of 1,000, yielding to
  the loop between runs); the time runs until ``counts().written == N``, and the table must
  then hold N more rows. Once per batch size (``--batch-sizes``; the default
  ``ANALYTICS_BATCH_SIZE`` is 1,000). The time spent inside ``emit`` is reported per event.

The HTTP load comes from ``wrk`` when it is on PATH, else from the asyncio generator of
``bench/query.py`` (whose load generators and dataset helpers this script reuses). Any
answer other than 200 is an error, and a run with errors, or with stored events that do not
match the queries answered, is reported as invalid (exit code 1).

Run: ``uv run python bench/analytics.py [--duration 10] [--warmup 2] [--concurrency 32]
[--rounds 2] [--rows 100000] [--database postgres|sqlite] [--set NAME=VALUE ...]
[--events 200000] [--batch-sizes 1000,10000] [--loadgen auto|wrk|python]
[--skip-api] [--skip-writer]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import query as query_bench  # bench/query.py: this script's folder is first on sys.path
import uvloop
from query import POOL_SIZE, HttpTarget, Measurement
from sqlalchemy.engine import make_url

from tablehouse.analytics.pipeline.lifecycle import prepare
from tablehouse.analytics.pipeline.writer import EventWriter, WriterCounts, WriterSettings
from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget, chdb_url
from tablehouse.config import Settings, load_settings
from tablehouse.query.events import QueryExecuted

T = TypeVar("T")
DATABASE = "tablehouse"  # the API server's ClickHouse database (ANALYTICS_DATABASE's default)
WRITER_DATABASE = "bench_writer"
DATA = "data"  # the servers' DATA_DIR, in the temporary folder
QUERY_ROUTE = "/api/v1/query"
METRICS_TOKEN = "analytics-bench-metrics-token"
TARGET_RATIO = 0.95
TARGET_EVENTS_PER_SECOND = 50_000
EMIT_RUN = 1_000  # events emitted between two yields to the loop
DISTINCT_EVENTS = 10_000  # events built in advance and cycled through
DEFAULT_BATCH_SIZE = WriterSettings(spool_dir=Path()).batch_size  # ANALYTICS_BATCH_SIZE's
DEFAULT_QUEUE_SIZE = WriterSettings(spool_dir=Path()).queue_size  # ANALYTICS_QUEUE_SIZE's
SETTLE_SECONDS = 1.0  # after a load, for the requests of connections wrk closed to finish
STOP_TIMEOUT = 60.0  # seconds a server may take to stop after SIGTERM
# uvicorn re-raises the signal once it has shut down: -15 is a clean stop, as 0 would be.
CLEAN_EXITS = (0, -signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class Options:
    rows: int
    concurrency: int
    duration: float
    warmup: float
    rounds: int
    loadgen: str  # "wrk" or "python"
    wrk_threads: int
    events: int
    batch_sizes: tuple[int, ...]
    queue_sizes: tuple[int, ...]
    database: str  # "postgres" or "sqlite"
    settings: tuple[tuple[str, str], ...] = ()  # --set NAME=VALUE, for every server


def _chdb(data_dir: Path) -> Path:
    """The embedded store's path: the server's, then the writer benchmark's."""
    return data_dir / "analytics"


# --- servers -------------------------------------------------------------------------------


def _setting_names() -> set[str]:
    """Every environment name a setting is read from, bare and prefixed."""
    names = {name.upper() for name in Settings.model_fields}
    return names | {f"TABLEHOUSE_{name}" for name in names}


@dataclass(frozen=True, slots=True)
class Database:
    url: str  # DATABASE_URL
    pool_size: int  # DB_POOL_SIZE (DB_MAX_OVERFLOW is 0)
    label: str  # for the report
    dsn: str | None = None  # PostgreSQL: for asyncpg (ANALYZE)


@contextmanager
def _database(kind: str, data_dir: Path, concurrency: int) -> Iterator[Database]:
    """PostgreSQL: a database of its own, dropped at the end. SQLite: a file in DATA_DIR."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'tablehouse.db'}"
        yield Database(url, POOL_SIZE, "SQLite")
        return
    name = f"th_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(query_bench._admin(f"CREATE DATABASE {name}"))
    try:
        dsn = query_bench._dsn(name)
        driver_url = make_url(dsn).set(drivername="postgresql+asyncpg")
        version = asyncio.run(_postgres_version(dsn))
        label = f"PostgreSQL {version} on the same machine"
        yield Database(driver_url.render_as_string(hide_password=False), POOL_SIZE, label, dsn)
    finally:
        asyncio.run(query_bench._drop_database(name))


async def _postgres_version(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return str(await connection.fetchval("SHOW server_version")).split()[0]
    finally:
        await connection.close()


@dataclass(frozen=True, slots=True)
class ApiSetup:
    options: Options
    data_dir: Path
    database: Database

    def env(self, *, analytics: bool) -> dict[str, str]:
        return _server_env(self, analytics=analytics)


def _server_env(setup: ApiSetup, *, analytics: bool) -> dict[str, str]:
    """This environment without any Tablehouse setting, plus the benchmark's own."""
    names = _setting_names()
    env = {k: v for k, v in os.environ.items() if k not in names}
    data_dir = setup.data_dir
    env.update(
        DATA_DIR=str(data_dir),
        DATABASE_URL=setup.database.url,
        ANALYTICS_ENABLED="true" if analytics else "false",
        ANALYTICS_URL=chdb_url(_chdb(data_dir)),
        ANALYTICS_DATABASE=DATABASE,
        ANALYTICS_SPOOL_DIR=str(data_dir / "analytics-spool"),
        LOG_LEVEL="WARNING",
        METRICS_TOKEN=METRICS_TOKEN,
        # One user sends every request: as many queries at once as there are connections
        # (the per-user check still runs), or the default of 4 answers 429.
        QUERY_MAX_CONCURRENT_PER_USER=str(max(setup.options.concurrency, 4)),
        # As bench/query.py: no overflow. SQLAlchemy closes an overflow connection as soon as
        # it is returned, so under steady load every request would open a new connection.
        DB_POOL_SIZE=str(setup.database.pool_size),
        DB_MAX_OVERFLOW="0",
    )
    env.update(setup.options.settings)
    return env


def _tablehouse(*args: str) -> list[str]:
    return [sys.executable, "-m", "tablehouse", *args]


def _db_init(data_dir: Path, env: dict[str, str]) -> None:
    """The database schema and the analytics tables (run with analytics enabled)."""
    done = subprocess.run(
        _tablehouse("db", "init"), env=env, cwd=data_dir, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"tablehouse db init failed:\n{done.stdout}{done.stderr}")


@dataclass(slots=True)
class Server:
    port: int
    process: subprocess.Popen[bytes]
    exit_code: int | None = None


@contextmanager
def _serve(data_dir: Path, env: dict[str, str], log: Path) -> Iterator[Server]:
    """``tablehouse serve`` (cwd: ``data_dir``, which has no .env), ready once /health
    answers; stopped with SIGTERM when the block ends, its exit code then in the Server."""
    port = query_bench._free_port()
    command = _tablehouse("serve", "--port", str(port))
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, cwd=data_dir, stdout=output, stderr=subprocess.STDOUT
        )
    server = Server(port, process)
    try:
        query_bench._wait_until_up(process, port, log)
        yield server
    finally:
        server.exit_code = _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -signal.SIGKILL


# --- what the server answered, what it stored ----------------------------------------------

_REQUESTS = re.compile(r"^tablehouse_http_requests_total\{([^}]*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _query_answers(port: int) -> dict[str, int]:
    """``POST /api/v1/query`` answers so far by status, from the server's /metrics."""
    response = httpx.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=30,
    )
    response.raise_for_status()
    answers: dict[str, int] = {}
    for labels_text, value in _REQUESTS.findall(response.text):
        labels = dict(_LABEL.findall(labels_text))
        if labels.get("route") == QUERY_ROUTE and labels.get("method") == "POST":
            answers[labels["status"]] = int(float(value))
    return answers


@dataclass(frozen=True, slots=True)
class Stored:
    """What ``query_logs`` holds: rows, rows with status ok, and inserts so far (the table's
    last block number: each insert into a MergeTree table takes the next one)."""

    rows: int = 0
    ok: int = 0
    inserts: int = 0

    def __sub__(self, before: Stored) -> Stored:
        return Stored(self.rows - before.rows, self.ok - before.ok, self.inserts - before.inserts)


_STORED_SQL = """
SELECT
    (SELECT count() FROM query_logs) AS rows,
    (SELECT countIf(status = 'ok') FROM query_logs) AS ok,
    (SELECT max(max_block_number) FROM system.parts
     WHERE database = {database:String} AND table = 'query_logs') AS inserts
"""


async def _stored(path: Path) -> Stored:
    """``query_logs`` at ``path`` (one process per path: only once the server has exited)."""
    store = AnalyticsStore(StoreTarget.from_url(chdb_url(path), database=DATABASE))
    try:
        (row,) = await store.query(_STORED_SQL, {"database": DATABASE})
    finally:
        await store.close()
    return Stored(int(row["rows"]), int(row["ok"]), int(row["inserts"] or 0))


def _spool_state(spool: Path) -> tuple[int, int]:
    """Spool segment files still waiting, and dead-lettered lines (as ``analytics status``)."""
    segments = list(spool.glob("slot-*/spool-*.ndjson"))
    letters = spool.glob("slot-*/dead_letter.ndjson")
    return len(segments), sum(len(path.read_bytes().splitlines()) for path in letters)


@dataclass(frozen=True, slots=True)
class EventCheck:
    answered: int  # POST /api/v1/query answers the server counted, any status
    answered_ok: int  # of which 200
    stored: Stored  # what query_logs gained, read after the stop
    spooled_segments: int
    dead_lettered: int
    exit_code: int | None

    @property
    def matches(self) -> bool:
        return (
            self.stored.rows == self.answered
            and self.stored.ok == self.answered_ok
            and self.exit_code in CLEAN_EXITS
        )


# --- the API runs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiRun:
    number: int
    analytics: bool
    measurement: Measurement
    check: EventCheck | None


def _point_target(port: int, key: str) -> HttpTarget:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return HttpTarget(port, QUERY_ROUTE, headers, query_bench._api_template("point"))


def _check_answer(target: HttpTarget, key: int) -> None:
    """One query before any load: 200 and the row asked for."""
    response = httpx.post(
        f"http://127.0.0.1:{target.port}{target.path}",
        content=target.body(key),
        headers=target.headers,
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"query answered {response.status_code}: {response.text[:500]}")
    rows = response.json()["rows"]
    if len(rows) != 1 or rows[0][0] != key:
        raise RuntimeError(f"expected the row with id {key}, got {rows}")


def _load(target: HttpTarget, options: Options, seconds: float) -> Measurement:
    if options.loadgen == "wrk":
        return query_bench._wrk(
            target, options.rows, options.concurrency, seconds, options.wrk_threads
        )
    ids = [random.randint(1, options.rows) for _ in range(query_bench.PRE_ENCODED)]
    return _run(query_bench._python_http(target, ids, options.concurrency, seconds))


def _measured(target: HttpTarget, options: Options, label: str) -> Measurement:
    """A warm-up, then the measurement."""
    warm = _load(target, options, options.warmup)
    if warm.errors:
        print(f"warning: {warm.errors} errors in the {label} warm-up", file=sys.stderr)
    # wrk closes its connections with requests in flight, which the server still runs: let
    # them finish, or they hold query slots the next run's connections would find taken (429).
    time.sleep(SETTLE_SECONDS)
    result = _load(target, options, options.duration)
    print(f"  {label:15} {result.rate:8,.0f} req/s", file=sys.stderr)
    return result


def _api_run(
    setup: ApiSetup, number: int, analytics: bool, key: str | None
) -> tuple[Measurement, dict[str, int], int | None, str]:
    """One server, one measurement: what the load generator saw, the server's answers to
    queries by status (analytics runs only), its exit code, and the API key (made on the
    first run)."""
    options, data_dir = setup.options, setup.data_dir
    log = data_dir.parent / f"serve-{number}.log"
    with _serve(data_dir, setup.env(analytics=analytics), log) as server:
        if key is None:
            key = _load_dataset(setup, server.port)
        target = _point_target(server.port, key)
        _check_answer(target, random.randint(1, options.rows))
        label = f"run {number} ({'on' if analytics else 'off'})"
        measurement = _measured(target, options, label)
        time.sleep(SETTLE_SECONDS)  # the same, before the server's count is read
        answers = _query_answers(server.port) if analytics else {}
    return measurement, answers, server.exit_code, key


def _load_dataset(setup: ApiSetup, port: int) -> str:
    """The dataset, through the API; an API key with the query scope."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        key = query_bench._prepare_dataset(client, setup.options.rows)
    if setup.database.dsn is not None:
        asyncio.run(query_bench._table_name(setup.database.dsn))  # ANALYZE, as bench/query.py
    return key


def _event_check(
    data_dir: Path, answers: dict[str, int], before: Stored, exit_code: int | None
) -> tuple[EventCheck, Stored]:
    """What the stopped server stored since the table held ``before``; what it holds now."""
    now = _run(_stored(_chdb(data_dir)))
    segments, dead = _spool_state(data_dir / "analytics-spool")
    check = EventCheck(
        answered=sum(answers.values()),
        answered_ok=answers.get("200", 0),
        stored=now - before,
        spooled_segments=segments,
        dead_lettered=dead,
        exit_code=exit_code,
    )
    return check, now


def measure_api(setup: ApiSetup) -> list[ApiRun]:
    """Runs off, on, off, on, ... on one database; after each "on" run, the event check."""
    _db_init(setup.data_dir, setup.env(analytics=True))
    runs: list[ApiRun] = []
    key: str | None = None
    stored = Stored()  # empty after db init
    for number in range(1, 2 * setup.options.rounds + 1):
        analytics = number % 2 == 0
        measurement, answers, exit_code, key = _api_run(setup, number, analytics, key)
        check = None
        if analytics:
            check, stored = _event_check(setup.data_dir, answers, stored, exit_code)
        runs.append(ApiRun(number, analytics, measurement, check))
    return runs


# --- the writer ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriterRun:
    batch_size: int
    queue_size: int
    events: int
    seconds: float  # first emit until the writer confirmed every event
    emit_seconds: float  # inside emit() only
    emitted_after: float  # first emit until the last one returned
    peak_pending: int
    peak_spooled: int
    stored: int  # new rows in query_logs
    counts: WriterCounts

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _events(count: int) -> list[QueryExecuted]:
    user = uuid.uuid4()
    return [
        QueryExecuted(
            query_id=uuid.uuid4(),
            user_id=user,
            query_text=query_bench.API_SQL["point"],
            status="ok",
            error=None,
            execution_time_ms=round(random.uniform(0.2, 5.0), 3),
            rows_read=1,
            bytes_read=random.randint(40, 80),
            timestamp=datetime.now(UTC),
        )
        for _ in range(count)
    ]


@dataclass(slots=True)
class _Peaks:
    pending: int = 0
    spooled: int = 0

    def see(self, counts: WriterCounts) -> None:
        self.pending = max(self.pending, counts.pending)
        self.spooled = max(self.spooled, counts.spooled)


async def _emit_all(
    writer: EventWriter, events: list[QueryExecuted], total: int, peaks: _Peaks
) -> float:
    """Emit ``total`` events in runs, yielding to the loop between runs; seconds in emit."""
    inside = 0.0
    for start in range(0, total, EMIT_RUN):
        began = time.perf_counter()
        for index in range(start, min(total, start + EMIT_RUN)):
            writer.emit(events[index % len(events)])
        inside += time.perf_counter() - began
        peaks.see(writer.counts())
        await asyncio.sleep(0)
    return inside


async def _until_written(writer: EventWriter, total: int, peaks: _Peaks) -> WriterCounts:
    while (counts := writer.counts()).written < total:
        if counts.lost or counts.dead_lettered:
            raise RuntimeError(f"the writer lost or set aside events: {counts}")
        peaks.see(counts)
        await asyncio.sleep(0.002)
    return counts


async def _writer_run(
    store: AnalyticsStore, settings: WriterSettings, total: int, events: list[QueryExecuted]
) -> WriterRun:
    (before,) = await store.query("SELECT count() AS n FROM query_logs")
    writer = EventWriter(store, settings)
    await writer.start()
    peaks = _Peaks()
    try:
        started = time.perf_counter()
        emit_seconds = await _emit_all(writer, events, total, peaks)
        emitted = time.perf_counter()
        counts = await _until_written(writer, total, peaks)
        finished = time.perf_counter()
    finally:
        await writer.stop()
    (after,) = await store.query("SELECT count() AS n FROM query_logs")
    return WriterRun(
        batch_size=settings.batch_size,
        queue_size=settings.queue_size,
        events=total,
        seconds=finished - started,
        emit_seconds=emit_seconds,
        emitted_after=emitted - started,
        peak_pending=peaks.pending,
        peak_spooled=peaks.spooled,
        stored=int(after["n"]) - int(before["n"]),
        counts=counts,
    )


async def _measure_writer(options: Options, folder: Path, chdb: Path) -> list[WriterRun]:
    settings = load_settings(_env_file=None, data_dir=folder)
    store = AnalyticsStore(StoreTarget.from_url(chdb_url(chdb), database=WRITER_DATABASE))
    events = _events(DISTINCT_EVENTS)
    results = []
    try:
        await prepare(store, settings)
        # The first insert imports what clickhouse-connect loads lazily (pandas): not timed.
        await _writer_run(store, WriterSettings(spool_dir=folder / "warm-up"), 2_000, events)
        for batch_size, queue_size in itertools.product(options.batch_sizes, options.queue_sizes):
            spool = folder / f"spool-{batch_size}-{queue_size}"
            writer_settings = WriterSettings(
                spool_dir=spool, batch_size=batch_size, queue_size=queue_size
            )
            result = await _writer_run(store, writer_settings, options.events, events)
            print(
                f"  batch {batch_size:<8,} queue {queue_size:<9,} {result.rate:10,.0f} events/s",
                file=sys.stderr,
            )
            results.append(result)
    finally:
        await store.close()
    return results


def measure_writer(options: Options, folder: Path) -> list[WriterRun]:
    """On the API runs' chDB path (chDB opens one data path per process), in a database of
    its own."""
    writer_dir = folder / "writer"
    writer_dir.mkdir()
    return _run(_measure_writer(options, writer_dir, _chdb(folder / DATA)))


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


# --- report --------------------------------------------------------------------------------


def _machine() -> str:
    return (
        f"{datetime.now(UTC):%Y-%m-%d} · {platform.platform()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()}"
    )


def _rate(runs: list[ApiRun], analytics: bool) -> float:
    chosen = [r.measurement for r in runs if r.analytics == analytics]
    return sum(m.requests for m in chosen) / sum(m.seconds for m in chosen)


def _settings_label(options: Options) -> str:
    if not options.settings:
        return "default writer settings"
    return "servers with " + ", ".join(f"{name}={value}" for name, value in options.settings)


def report_api(setup: ApiSetup, runs: list[ApiRun]) -> bool:
    """The API tables; whether the runs are valid (no errors, every event stored)."""
    options, database = setup.options, setup.database
    print(
        f"{_machine()} · load generator: {options.loadgen} · {options.concurrency} connections "
        f"· {options.duration:g} s per run (+{options.warmup:g} s warm-up) · {options.rows:,} "
        f"rows · {database.label}, DB_POOL_SIZE={database.pool_size}, DB_MAX_OVERFLOW=0 · "
        f"analytics: embedded chDB, {_settings_label(options)}\n"
    )
    print("| run | analytics | requests/s | p50 ms | p99 ms | errors |")
    print("|---:|---|---:|---:|---:|---:|")
    for run in runs:
        m = run.measurement
        cells = [f"{m.rate:,.0f}", f"{m.p50_ms:.2f}", f"{m.p99_ms:.2f}", str(m.errors)]
        print(f"| {run.number} | {'on' if run.analytics else 'off'} | {' | '.join(cells)} |")
    on, off = _rate(runs, True), _rate(runs, False)
    ratio = on / off
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"\nAll rounds: off {off:,.0f} req/s, on {on:,.0f} req/s: on / off = {ratio:.2f}x "
        f"(target >= {TARGET_RATIO}x: {met})."
    )
    _events_table(runs)
    return _api_valid(runs)


def _events_table(runs: list[ApiRun]) -> None:
    """Per "on" run: answers against stored rows, and how the writer inserted them."""
    print(
        "\n| run | queries answered (200) | rows stored (ok) | inserts | rows per insert "
        "| spool files | dead letters |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        if (c := run.check) is not None:
            stored = c.stored
            cells = [
                f"{c.answered:,} ({c.answered_ok:,})",
                f"{stored.rows:,} ({stored.ok:,})",
                f"{stored.inserts:,}",
                f"{stored.rows / max(stored.inserts, 1):,.1f}",
                str(c.spooled_segments),
                str(c.dead_lettered),
            ]
            print(f"| {run.number} | {' | '.join(cells)} |")


def _api_valid(runs: list[ApiRun]) -> bool:
    valid = True
    if errors := sum(r.measurement.errors for r in runs):
        print(f"\nINVALID RUN: {errors} requests failed or answered other than 200.")
        valid = False
    for run in runs:
        if run.check is not None and not run.check.matches:
            print(f"\nEVENTS DO NOT MATCH in run {run.number}: {run.check}")
            valid = False
    return valid


def _default(value: int, default: int) -> str:
    return f"{value:,} (default)" if value == default else f"{value:,}"


def report_writer(options: Options, runs: list[WriterRun]) -> bool:
    """The writer table; whether every event reached the table."""
    print(
        f"\n{_machine()} · in-process EventWriter → AnalyticsStore (embedded chDB) · "
        f"{options.events:,} QueryExecuted events per run, emitted {EMIT_RUN:,} at a time · "
        "after one untimed warm-up run\n"
    )
    print(
        "| batch size | queue size | events/s | seconds | emit µs/event | all emitted after s "
        "| peak in memory | peak spooled | rows stored |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        cells = [
            _default(r.batch_size, DEFAULT_BATCH_SIZE),
            _default(r.queue_size, DEFAULT_QUEUE_SIZE),
            f"{r.rate:,.0f}",
            f"{r.seconds:.2f}",
            f"{r.emit_seconds / r.events * 1e6:.2f}",
            f"{r.emitted_after:.2f}",
            f"{r.peak_pending:,}",
            f"{r.peak_spooled:,}",
            f"{r.stored:,}",
        ]
        print(f"| {' | '.join(cells)} |")
    print()
    for r in runs:
        met = "met" if r.rate >= TARGET_EVENTS_PER_SECOND else "NOT met"
        print(
            f"Batch {r.batch_size:,}, queue {r.queue_size:,}: {r.rate:,.0f} events/s "
            f"(target >= {TARGET_EVENTS_PER_SECOND:,}: {met})."
        )
    if missing := [r for r in runs if r.stored != r.events]:
        print(f"\nROWS MISSING: {[(r.batch_size, r.events, r.stored) for r in missing]}")
    return not missing


# --- main ----------------------------------------------------------------------------------


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32, help="connections")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before each run")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (off, on)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--events", type=int, default=200_000, help="per writer run")
    parser.add_argument("--batch-sizes", default="1000,10000", help="comma-separated")
    parser.add_argument(
        "--queue-sizes",
        default=f"{DEFAULT_QUEUE_SIZE},all",
        help="comma-separated; all: --events, so that nothing goes to the spool",
    )
    parser.add_argument(
        "--database",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="postgres: TEST_POSTGRES_URL (default postgres@127.0.0.1:5432)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every server, e.g. ANALYTICS_BATCH_SIZE=10000 (repeatable)",
    )
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-writer", action="store_true")
    return parser.parse_args()


def _options(arguments: argparse.Namespace) -> Options:
    loadgen = arguments.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    elif loadgen == "wrk" and shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH")
    whole = arguments.duration.is_integer() and arguments.warmup.is_integer()
    if loadgen == "wrk" and not whole:
        sys.exit("wrk takes whole seconds: give --duration and --warmup as integers")
    return Options(
        rows=arguments.rows,
        concurrency=arguments.concurrency,
        duration=arguments.duration,
        warmup=arguments.warmup,
        rounds=arguments.rounds,
        loadgen=loadgen,
        wrk_threads=arguments.wrk_threads,
        events=arguments.events,
        batch_sizes=_sizes(arguments.batch_sizes, arguments.events),
        queue_sizes=_sizes(arguments.queue_sizes, arguments.events),
        database=arguments.database,
        settings=tuple(_setting(text) for text in arguments.set),
    )


def _sizes(text: str, events: int) -> tuple[int, ...]:
    """Comma-separated sizes; ``all`` is the number of events."""
    return tuple(events if x.strip() == "all" else int(x) for x in text.split(",") if x.strip())


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        sys.exit(f"--set takes NAME=VALUE, not {text!r}")
    return name, value


def _api(options: Options, folder: Path) -> bool:
    data_dir = folder / DATA
    data_dir.mkdir()
    with _database(options.database, data_dir, options.concurrency) as database:
        setup = ApiSetup(options, data_dir, database)
        return report_api(setup, measure_api(setup))


def main() -> None:
    arguments = _arguments()
    options = _options(arguments)
    started = time.perf_counter()
    valid = True
    with tempfile.TemporaryDirectory(prefix="tablehouse-bench-analytics-") as name:
        folder = Path(name)
        if not arguments.skip_api:
            valid &= _api(options, folder)
        if not arguments.skip_writer:
            valid &= report_writer(options, measure_writer(options, folder))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    if not valid:
        sys.exit(1)


if __name__ == "__main__":
    main()
