"""Analytics cost: API throughput with analytics on vs off, and the writer's rate into chDB.

Two measurements (the issue's targets in brackets):

- **API, analytics on vs off** [on >= 0.95x off]: a real ``tablehouse serve`` process on a
  SQLite database in a temporary ``DATA_DIR`` (``tablehouse db init`` first, which also creates
  the analytics tables), a dataset ``events`` of N rows loaded through the API, then
  ``POST /api/v1/query`` with a point query (``SELECT * FROM events WHERE id = :id``, ``id``
  random), each run with the same load after a warm-up. Every query leaves one
  ``QueryExecuted`` event: with ``ANALYTICS_ENABLED=true`` it goes through the buffered writer
  into embedded chDB (``chdb:///<DATA_DIR>/analytics``); with ``false``, to the log sink
  (filtered out at ``LOG_LEVEL=WARNING``). Runs alternate off, on, off, on, ... (``--rounds``),
  one server process per run, on the same database. After each "on" run the server is stopped
  with SIGTERM (which flushes the writer) and, once it has exited, the benchmark opens the
  chDB path itself and counts the new ``query_logs`` rows; they must equal the number of
  queries the server answered (its own ``/metrics`` counter for ``POST /api/v1/query``, read
  just before the stop, warm-up and the pre-load check included).
- **Writer into chDB** [>= 50,000 events/s]: in this process, an ``EventWriter`` on a real
  ``AnalyticsStore`` (embedded chDB on a temporary path, tables created by ``prepare``) is
  handed N ``QueryExecuted`` events as fast as the loop allows (``emit`` in runs of 1,000,
  yielding to the loop between runs); the time runs until ``counts().written == N``, and the
  table must then hold N more rows. Once per batch size (``--batch-sizes``; the default
  ``ANALYTICS_BATCH_SIZE`` is 1,000). The time spent inside ``emit`` is reported per event.

The HTTP load comes from ``wrk`` when it is on PATH, else from the asyncio generator of
``bench/query.py`` (whose load generators and dataset helpers this script reuses). Any
answer other than 200 is an error, and a run with errors, or with stored events that do not
match the queries answered, is reported as invalid (exit code 1).

Run: ``uv run python bench/analytics.py [--duration 10] [--warmup 2] [--concurrency 32]
[--rounds 2] [--rows 100000] [--events 200000] [--batch-sizes 1000,10000]
[--loadgen auto|wrk|python]``
"""

from __future__ import annotations

import argparse
import asyncio
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

import httpx
import query as query_bench  # bench/query.py: this script's folder is first on sys.path
import uvloop
from query import HttpTarget, Measurement

from tablehouse.analytics.lifecycle import prepare
from tablehouse.analytics.store import AnalyticsStore, StoreTarget, chdb_url
from tablehouse.analytics.writer import EventWriter, WriterCounts, WriterSettings
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
STOP_TIMEOUT = 60.0  # seconds a server may take to stop after SIGTERM
DEFAULT_BATCH_SIZE = WriterSettings(spool_dir=Path()).batch_size  # ANALYTICS_BATCH_SIZE's


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


def _chdb(data_dir: Path) -> Path:
    """The embedded store's path: the server's, then the writer benchmark's."""
    return data_dir / "analytics"


# --- servers -------------------------------------------------------------------------------


def _setting_names() -> set[str]:
    """Every environment name a setting is read from, bare and prefixed."""
    names = {name.upper() for name in Settings.model_fields}
    return names | {f"TABLEHOUSE_{name}" for name in names}


def _server_env(data_dir: Path, options: Options, *, analytics: bool) -> dict[str, str]:
    """This environment without any Tablehouse setting, plus the benchmark's own."""
    names = _setting_names()
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(
        DATA_DIR=str(data_dir),
        DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'tablehouse.db'}",
        ANALYTICS_ENABLED="true" if analytics else "false",
        ANALYTICS_URL=chdb_url(_chdb(data_dir)),
        ANALYTICS_DATABASE=DATABASE,
        ANALYTICS_SPOOL_DIR=str(data_dir / "analytics-spool"),
        LOG_LEVEL="WARNING",
        METRICS_TOKEN=METRICS_TOKEN,
        # One user sends every request: as many queries at once as there are connections
        # (the per-user check still runs), or the default of 4 answers 429.
        QUERY_MAX_CONCURRENT_PER_USER=str(max(options.concurrency, 4)),
        DB_POOL_SIZE="10",
        DB_MAX_OVERFLOW="0",
    )
    return env


def _tablehouse(*args: str) -> list[str]:
    return [sys.executable, "-m", "tablehouse", *args]


def _db_init(data_dir: Path, env: dict[str, str]) -> None:
    """The SQLite schema and the analytics tables (run with analytics enabled)."""
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


async def _count_query_logs(path: Path) -> tuple[int, int]:
    """Rows in ``query_logs`` at ``path``, and those with status ok (one process per path:
    only once the server has exited)."""
    store = AnalyticsStore(StoreTarget.from_url(chdb_url(path), database=DATABASE))
    try:
        rows = await store.query(
            "SELECT count() AS stored, countIf(status = 'ok') AS ok FROM query_logs"
        )
    finally:
        await store.close()
    return int(rows[0]["stored"]), int(rows[0]["ok"])


def _spool_state(spool: Path) -> tuple[int, int]:
    """Spool segment files still waiting, and dead-lettered lines (as ``analytics status``)."""
    segments = list(spool.glob("slot-*/spool-*.ndjson"))
    letters = spool.glob("slot-*/dead_letter.ndjson")
    return len(segments), sum(len(path.read_bytes().splitlines()) for path in letters)


@dataclass(frozen=True, slots=True)
class EventCheck:
    answered: int  # POST /api/v1/query answers the server counted, any status
    answered_ok: int  # of which 200
    stored: int  # new rows in query_logs after the stop
    stored_ok: int  # of which status ok
    spooled_segments: int
    dead_lettered: int
    exit_code: int | None

    @property
    def matches(self) -> bool:
        return (
            self.stored == self.answered
            and self.stored_ok == self.answered_ok
            and self.exit_code == 0
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
    result = _load(target, options, options.duration)
    print(f"  {label:15} {result.rate:8,.0f} req/s", file=sys.stderr)
    return result


def _api_run(
    number: int, analytics: bool, data_dir: Path, options: Options, key: str | None
) -> tuple[Measurement, dict[str, int], int | None, str]:
    """One server, one measurement: what the load generator saw, the server's answers to
    queries by status (analytics runs only), its exit code, and the API key (made on the
    first run)."""
    env = _server_env(data_dir, options, analytics=analytics)
    log = data_dir.parent / f"serve-{number}.log"
    with _serve(data_dir, env, log) as server:
        if key is None:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=600) as client:
                key = query_bench._prepare_dataset(client, options.rows)
        target = _point_target(server.port, key)
        _check_answer(target, random.randint(1, options.rows))
        label = f"run {number} ({'on' if analytics else 'off'})"
        measurement = _measured(target, options, label)
        time.sleep(1)  # requests a closed connection left running finish
        answers = _query_answers(server.port) if analytics else {}
    return measurement, answers, server.exit_code, key


def _event_check(
    data_dir: Path, answers: dict[str, int], before: tuple[int, int], exit_code: int | None
) -> tuple[EventCheck, tuple[int, int]]:
    """What the stopped server stored since the table held ``before`` (rows, ok rows);
    what it holds now."""
    stored, stored_ok = _run(_count_query_logs(_chdb(data_dir)))
    segments, dead = _spool_state(data_dir / "analytics-spool")
    check = EventCheck(
        answered=sum(answers.values()),
        answered_ok=answers.get("200", 0),
        stored=stored - before[0],
        stored_ok=stored_ok - before[1],
        spooled_segments=segments,
        dead_lettered=dead,
        exit_code=exit_code,
    )
    return check, (stored, stored_ok)


def measure_api(options: Options, folder: Path) -> list[ApiRun]:
    """Runs off, on, off, on, ... on one database; after each "on" run, the event check."""
    data_dir = folder / DATA
    data_dir.mkdir()
    _db_init(data_dir, _server_env(data_dir, options, analytics=True))
    runs: list[ApiRun] = []
    key: str | None = None
    stored = (0, 0)  # rows in query_logs, and ok rows: empty after db init
    for number in range(1, 2 * options.rounds + 1):
        analytics = number % 2 == 0
        measurement, answers, exit_code, key = _api_run(number, analytics, data_dir, options, key)
        check = None
        if analytics:
            check, stored = _event_check(data_dir, answers, stored, exit_code)
        runs.append(ApiRun(number, analytics, measurement, check))
    return runs


# --- the writer ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriterRun:
    batch_size: int
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
    store: AnalyticsStore, spool: Path, batch_size: int, total: int, events: list[QueryExecuted]
) -> WriterRun:
    (before,) = await store.query("SELECT count() AS n FROM query_logs")
    writer = EventWriter(store, WriterSettings(spool_dir=spool, batch_size=batch_size))
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
        batch_size=batch_size,
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
        for size in options.batch_sizes:
            result = await _writer_run(
                store, folder / f"spool-{size}", size, options.events, events
            )
            print(f"  batch {size:<8,} {result.rate:10,.0f} events/s", file=sys.stderr)
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


def report_api(options: Options, runs: list[ApiRun]) -> bool:
    """The API tables; whether the runs are valid (no errors, every event stored)."""
    print(
        f"{_machine()} · load generator: {options.loadgen} · {options.concurrency} connections "
        f"· {options.duration:g} s per run (+{options.warmup:g} s warm-up) · {options.rows:,} "
        "rows · SQLite · embedded chDB\n"
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
    print("\n| run | queries answered (200) | rows stored (ok) | spool files | dead letters |")
    print("|---:|---:|---:|---:|---:|")
    for run in runs:
        if (c := run.check) is not None:
            cells = [
                f"{c.answered:,} ({c.answered_ok:,})",
                f"{c.stored:,} ({c.stored_ok:,})",
                str(c.spooled_segments),
                str(c.dead_lettered),
            ]
            print(f"| {run.number} | {' | '.join(cells)} |")
    return _api_valid(runs)


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


def report_writer(options: Options, runs: list[WriterRun]) -> bool:
    print(
        f"\n{_machine()} · in-process EventWriter → AnalyticsStore (embedded chDB) · "
        f"{options.events:,} QueryExecuted events per run · emitted {EMIT_RUN:,} at a time\n"
    )
    print(
        "| batch size | events/s | seconds | emit µs/event | all emitted after s "
        "| peak in memory | peak spooled | rows stored |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        default = " (default)" if r.batch_size == DEFAULT_BATCH_SIZE else ""
        cells = [
            f"{r.batch_size:,}{default}",
            f"{r.rate:,.0f}",
            f"{r.seconds:.2f}",
            f"{r.emit_seconds / r.events * 1e6:.2f}",
            f"{r.emitted_after:.2f}",
            f"{r.peak_pending:,}",
            f"{r.peak_spooled:,}",
            f"{r.stored:,}",
        ]
        print(f"| {' | '.join(cells)} |")
    for r in runs:
        met = "met" if r.rate >= TARGET_EVENTS_PER_SECOND else "NOT met"
        print(
            f"\nBatch {r.batch_size:,}: {r.rate:,.0f} events/s "
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
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each run")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (off, on)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--events", type=int, default=200_000, help="per writer run")
    parser.add_argument("--batch-sizes", default="1000,10000", help="comma-separated")
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
        batch_sizes=tuple(int(x) for x in arguments.batch_sizes.split(",") if x.strip()),
    )


def main() -> None:
    arguments = _arguments()
    options = _options(arguments)
    started = time.perf_counter()
    valid = True
    with tempfile.TemporaryDirectory(prefix="tablehouse-bench-analytics-") as name:
        folder = Path(name)
        if not arguments.skip_api:
            valid &= report_api(options, measure_api(options, folder))
        if not arguments.skip_writer:
            valid &= report_writer(options, measure_writer(options, folder))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    if not valid:
        sys.exit(1)


if __name__ == "__main__":
    main()
