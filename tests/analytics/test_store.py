"""The analytics store and its migrations, against a real embedded chDB."""

from __future__ import annotations

import asyncio
import http.server
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver import exceptions as ch

from tablehouse.analytics import repository
from tablehouse.analytics.store import migrations
from tablehouse.analytics.store.client import (
    AnalyticsStore,
    StoreRejected,
    StoreTarget,
    StoreUnavailable,
    _classify,
    chdb_url,
)

# The shared chDB fixtures, registered once per process (so their session path is one path).

QUERY_LOG_COLUMNS = (
    "query_id",
    "user_id",
    "query_text",
    "status",
    "error",
    "execution_time_ms",
    "rows_read",
    "bytes_read",
    "timestamp",
)
MIGRATIONS = [
    (1, "query_logs"),
    (2, "metrics"),
    (3, "query_logs_api_key"),
    (4, "query_logs_source_and_microseconds"),
]


def query_log_row(timestamp: datetime, user_id: uuid.UUID | None = None) -> list[Any]:
    return [uuid.uuid4(), user_id or uuid.uuid4(), "SELECT 1", "ok", None, 12, 1, 8, timestamp]


async def count(store: AnalyticsStore, table: str) -> int:
    rows = await store.query(f"SELECT count() AS n FROM {table}")
    return int(rows[0]["n"])


async def show_create(store: AnalyticsStore, table: str) -> str:
    rows = await store.query(f"SHOW CREATE TABLE {store.target.database}.{table}")
    return str(next(iter(rows[0].values())))


# --- targets ------------------------------------------------------------------------------


def test_chdb_urls_read_the_path_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = StoreTarget.from_url("chdb:///./data/analytics")
    assert relative.path == str(tmp_path.resolve() / "data" / "analytics")
    assert StoreTarget.from_url("chdb:///data/analytics").path == relative.path
    absolute = StoreTarget.from_url(chdb_url(tmp_path / "x"), database="d")
    assert absolute.embedded
    assert (absolute.path, absolute.database) == (str(tmp_path.resolve() / "x"), "d")
    assert StoreTarget.from_url(absolute.url).path == absolute.path


def test_http_urls_name_the_database_and_hide_the_password() -> None:
    target = StoreTarget.from_url("https://u:s3cret@ch.example:8443/logs", database="other")
    assert (target.database, target.embedded) == ("logs", False)
    assert target.describe() == "https://u:***@ch.example:8443/logs"
    assert "s3cret" not in target.describe()
    assert StoreTarget.from_url("http://ch:8123").database == "tablehouse"
    with pytest.raises(ValueError, match="expected chdb"):
        StoreTarget.from_url("mysql://x")


# --- connecting ---------------------------------------------------------------------------


async def test_connect_creates_the_database_and_ping_answers(
    analytics_target: StoreTarget,
) -> None:
    store = AnalyticsStore(analytics_target)
    try:
        await store.connect()
        await store.connect()
        rows = await store.query(
            "SELECT name FROM system.databases WHERE name = {db:String}",
            {"db": analytics_target.database},
        )
        assert rows == [{"name": analytics_target.database}]
        assert re.match(r"^\d+\.\d+", await store.ping())
    finally:
        await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.ping()


async def test_a_second_chdb_path_in_one_process_is_refused(
    analytics_store: AnalyticsStore, tmp_path: Path
) -> None:
    other = AnalyticsStore(StoreTarget.from_url(chdb_url(tmp_path / "other")))
    with pytest.raises(StoreUnavailable, match="chDB allows one data path per process"):
        await other.ping()
    await other.close()
    assert await analytics_store.ping()  # the open engine is unharmed


async def test_stores_on_one_path_share_the_engine(analytics_store: AnalyticsStore) -> None:
    await migrations.migrate(analytics_store)
    other = AnalyticsStore(analytics_store.target)
    await other.insert("query_logs", QUERY_LOG_COLUMNS, [query_log_row(datetime.now(UTC))])
    await other.close()  # closes its own handle only: the engine stays up for the first store
    assert await count(analytics_store, "query_logs") == 1


async def test_an_unreachable_server_is_unavailable_quickly() -> None:
    store = AnalyticsStore(StoreTarget.from_url("http://user:pw@127.0.0.1:1/x"))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        await store.ping()
    assert "pw" not in str(raised.value)
    with pytest.raises(StoreUnavailable):
        await store.insert("query_logs", QUERY_LOG_COLUMNS, [query_log_row(datetime.now(UTC))])
    assert time.monotonic() - started < 5
    await store.close()


@pytest.fixture
def bad_gateway() -> Iterator[str]:
    """An HTTP server answering 502, as a proxy in front of a ClickHouse that is down does."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(502)

        def do_POST(self) -> None:
            self.send_error(502)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/x"
    server.shutdown()
    server.server_close()


async def test_an_http_error_that_is_not_from_clickhouse_is_unavailable(bad_gateway: str) -> None:
    store = AnalyticsStore(StoreTarget.from_url(bad_gateway))
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ch.DatabaseError("...", code=62, name="SYNTAX_ERROR"), StoreRejected),
        (ch.DatabaseError("...", code=53, name="TYPE_MISMATCH"), StoreRejected),
        (ch.DatabaseError("...", code=241, name="MEMORY_LIMIT_EXCEEDED"), StoreUnavailable),
        (ch.DatabaseError("...", code=516, name="AUTHENTICATION_FAILED"), StoreUnavailable),
        (ch.DatabaseError("...", code=60, name="UNKNOWN_TABLE"), StoreUnavailable),
        (ch.OperationalError("Error executing HTTP request"), StoreUnavailable),
        (ch.DatabaseError("HTTP driver received HTTP status 502"), StoreUnavailable),
        (ch.DataError("Unable to create native array for column `n`"), StoreRejected),
        (ValueError("invalid literal for int()"), StoreRejected),
        (ConnectionResetError(), StoreUnavailable),
    ],
)  # fmt: skip
def test_errors_are_classified_by_whether_a_retry_can_help(
    error: Exception, expected: type[Exception]
) -> None:
    assert type(_classify(error, "store")) is expected


# --- migrations ---------------------------------------------------------------------------


def test_every_ddl_statement_can_be_rerun() -> None:
    rendered = migrations.migrations(
        query_log_ttl_days=90, metrics_ttl_days=365, cluster=None, database="d"
    )
    assert [(m.version, m.name) for m in rendered] == MIGRATIONS
    statements = [s for m in rendered for s in m.statements]
    statements += migrations.bootstrap_statements(cluster=None, database="d")
    assert all(" IF NOT EXISTS " in s for s in statements)
    assert all("ON CLUSTER" not in s and "Replicated" not in s for s in statements)


def test_a_cluster_gets_on_cluster_and_replicated_engines() -> None:
    rendered = migrations.migrations(
        query_log_ttl_days=90, metrics_ttl_days=365, cluster="c1", database="d"
    )
    statements = [s for m in rendered for s in m.statements]
    statements += migrations.bootstrap_statements(cluster="c1", database="d")
    engine = "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
    for statement in statements:
        assert " ON CLUSTER c1\n" in statement
    for statement in (s for s in statements if s.startswith("CREATE TABLE")):
        assert f"ENGINE = {engine}" in statement
        assert "replicated_deduplication_window" in statement
        assert "non_replicated" not in statement


def test_ttl_days_must_be_positive_whole_days() -> None:
    with pytest.raises(ValueError, match="whole number of days"):
        migrations.migrations(
            query_log_ttl_days=0, metrics_ttl_days=365, cluster=None, database="d"
        )


async def test_migrate_creates_the_tables_once_and_records_them(
    analytics_store: AnalyticsStore,
) -> None:
    assert [(v, n, a) for v, n, a in await migrations.status(analytics_store)] == [
        (v, n, None) for v, n in MIGRATIONS
    ]
    assert await migrations.migrate(analytics_store) == [n for _, n in MIGRATIONS]
    assert await migrations.migrate(analytics_store) == []

    status = await migrations.status(analytics_store)
    assert [(v, n) for v, n, _ in status] == MIGRATIONS
    for _, _, applied_at in status:
        assert applied_at is not None
        assert applied_at.tzinfo is not None
        assert abs(datetime.now(UTC) - applied_at) < timedelta(minutes=1)
    assert await count(analytics_store, migrations.MIGRATIONS_TABLE) == len(MIGRATIONS)


async def test_a_half_applied_migration_is_completed_by_the_next_run(
    analytics_store: AnalyticsStore,
) -> None:
    target = analytics_store.target
    first = migrations.migrations(
        query_log_ttl_days=90, metrics_ttl_days=365, cluster=None, database=target.database
    )[0]
    for statement in first.statements:  # as if the run stopped before recording it
        await analytics_store.command(statement)
    assert await migrations.migrate(analytics_store) == [n for _, n in MIGRATIONS]


async def test_rows_logged_before_0004_read_as_api_and_their_milliseconds(
    analytics_store: AnalyticsStore,
) -> None:
    target = analytics_store.target
    before = migrations.migrations(
        query_log_ttl_days=90, metrics_ttl_days=365, cluster=None, database=target.database
    )[:3]
    for migration in before:
        for statement in migration.statements:
            await analytics_store.command(statement)
    now = datetime.now(UTC)
    await analytics_store.insert("query_logs", QUERY_LOG_COLUMNS, [query_log_row(now)])

    await migrations.migrate(analytics_store)
    await analytics_store.insert(
        "query_logs",
        (*QUERY_LOG_COLUMNS, "execution_time_us", "source"),
        [[*query_log_row(now)[:5], 0, 1, 8, now, 412, "cli"]],
    )
    rows = await analytics_store.query(
        "SELECT source, execution_time_ms, execution_time_us FROM query_logs ORDER BY source"
    )
    buckets = await repository.summary(
        analytics_store,
        repository.QueryFilter(None, now - timedelta(hours=1), now + timedelta(hours=1)),
        interval="day",
    )

    assert [(r["source"], r["execution_time_ms"], r["execution_time_us"]) for r in rows] == [
        ("api", 12, 12_000),  # whole milliseconds, as logged then
        ("cli", 0, 412),
    ]
    assert len(buckets) == 1
    assert min(buckets[0]["times"]) >= 0.412  # a fast query no longer reads as 0 ms
    assert max(buckets[0]["times"]) <= 12.0


async def test_tables_have_monthly_partitions_ttl_and_dedup(
    analytics_store: AnalyticsStore,
) -> None:
    await migrations.migrate(analytics_store, query_log_ttl_days=30, metrics_ttl_days=400)
    query_logs = await show_create(analytics_store, "query_logs")
    metrics = await show_create(analytics_store, "metrics")
    for ddl in (query_logs, metrics):
        assert "ENGINE = MergeTree\n" in ddl
        assert "PARTITION BY toYYYYMM(timestamp)" in ddl
        assert "non_replicated_deduplication_window = 10000" in ddl
    assert "ORDER BY (user_id, timestamp, query_id)" in query_logs
    assert "TTL toDateTime(timestamp) + toIntervalDay(30)" in query_logs
    assert "ORDER BY (metric_name, timestamp)" in metrics
    assert "TTL toDateTime(timestamp) + toIntervalDay(400)" in metrics


async def test_rows_older_than_the_ttl_go_at_optimize_final(
    analytics_store: AnalyticsStore,
) -> None:
    await migrations.migrate(analytics_store, query_log_ttl_days=90)
    now = datetime.now(UTC)
    rows = [query_log_row(now - timedelta(days=age)) for age in (0, 30, 200)]
    # Background merges would already drop the expired row; stopped, all three are stored.
    await analytics_store.command("SYSTEM STOP MERGES query_logs")
    await analytics_store.insert("query_logs", QUERY_LOG_COLUMNS, rows)
    assert await count(analytics_store, "query_logs") == 3

    await analytics_store.command("SYSTEM START MERGES query_logs")
    await analytics_store.command("OPTIMIZE TABLE query_logs FINAL")
    kept = await analytics_store.query("SELECT query_id FROM query_logs")
    assert {row["query_id"] for row in kept} == {rows[0][0], rows[1][0]}


async def test_apply_ttl_shortens_a_ttl_once(analytics_store: AnalyticsStore) -> None:
    await migrations.migrate(analytics_store)
    now = datetime.now(UTC)
    columns = ("metric_name", "value", "metric_type", "tags", "timestamp")
    recent = ["requests", 1.0, "counter", {"route": "/a"}, now]
    await analytics_store.insert(
        "metrics", columns, [recent, ["requests", 2.0, "counter", {}, now - timedelta(days=100)]]
    )
    await analytics_store.command("OPTIMIZE TABLE metrics FINAL")
    assert await count(analytics_store, "metrics") == 2  # inside the 365 days

    changed = await migrations.apply_ttl(
        analytics_store, query_log_ttl_days=90, metrics_ttl_days=30
    )
    assert changed == ["metrics"]
    assert "toIntervalDay(30)" in await show_create(analytics_store, "metrics")
    await analytics_store.command("OPTIMIZE TABLE metrics FINAL")
    assert await analytics_store.query("SELECT value FROM metrics") == [{"value": 1.0}]
    assert (
        await migrations.apply_ttl(analytics_store, query_log_ttl_days=90, metrics_ttl_days=30)
        == []
    )


# --- reading and writing ------------------------------------------------------------------


async def test_a_retried_batch_counts_once(analytics_store: AnalyticsStore) -> None:
    await migrations.migrate(analytics_store)
    batch = [query_log_row(datetime.now(UTC)) for _ in range(3)]
    await analytics_store.insert("query_logs", QUERY_LOG_COLUMNS, batch, dedup_token="b-1")
    await analytics_store.insert("query_logs", QUERY_LOG_COLUMNS, batch, dedup_token="b-1")
    assert await count(analytics_store, "query_logs") == 3
    await analytics_store.insert("query_logs", QUERY_LOG_COLUMNS, batch, dedup_token="b-2")
    assert await count(analytics_store, "query_logs") == 6
    await analytics_store.insert("query_logs", QUERY_LOG_COLUMNS, [])  # nothing to send


async def test_query_binds_parameters_and_returns_python_values(
    analytics_store: AnalyticsStore,
) -> None:
    await migrations.migrate(analytics_store)
    user = uuid.uuid4()
    at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=891000)  # inside the TTL
    mine, theirs = query_log_row(at, user), query_log_row(at)
    await analytics_store.insert("query_logs", QUERY_LOG_COLUMNS, [mine, theirs])
    await analytics_store.insert(
        "metrics",
        ("metric_name", "value", "metric_type", "tags", "timestamp"),
        [["latency", 0.25, "histogram", {"route": "/x"}, at]],
    )

    rows = await analytics_store.query(
        "SELECT query_id, user_id, error, timestamp, execution_time_ms FROM query_logs"
        " WHERE user_id = {user:UUID} AND timestamp >= {since:DateTime64(3, 'UTC')}",
        {"user": user, "since": at - timedelta(seconds=1)},
    )
    assert rows == [
        {
            "query_id": mine[0],
            "user_id": user,
            "error": None,
            "timestamp": at,
            "execution_time_ms": 12,
        }
    ]
    assert isinstance(rows[0]["user_id"], uuid.UUID)
    assert rows[0]["timestamp"].utcoffset() == timedelta(0)
    metrics = await analytics_store.query("SELECT metric_type, tags, value FROM metrics")
    assert metrics == [{"metric_type": "histogram", "tags": {"route": "/x"}, "value": 0.25}]


async def test_data_the_store_cannot_take_is_rejected(analytics_store: AnalyticsStore) -> None:
    await migrations.migrate(analytics_store)
    bad = query_log_row(datetime.now(UTC))
    bad[5] = "twelve"  # execution_time_ms is a UInt32
    with pytest.raises(StoreRejected):
        await analytics_store.insert("query_logs", QUERY_LOG_COLUMNS, [bad])
    with pytest.raises(StoreRejected):
        await analytics_store.insert("query_logs", ("no_such_column",), [[1]])
    with pytest.raises(StoreRejected, match="SYNTAX_ERROR"):
        await analytics_store.query("SELEC 1")
    # A table that is not there yet is a set-up problem, worth retrying, not bad data.
    with pytest.raises(StoreUnavailable, match="UNKNOWN_TABLE"):
        await analytics_store.insert("not_migrated", ("a",), [[1]])
    assert await count(analytics_store, "query_logs") == 0


async def test_concurrent_calls_on_one_embedded_store(analytics_store: AnalyticsStore) -> None:
    results = await asyncio.gather(
        *(analytics_store.query("SELECT {n:UInt32} AS n", {"n": n}) for n in range(20))
    )
    assert [rows[0]["n"] for rows in results] == list(range(20))


# --- persistence and other processes -------------------------------------------------------

# Writes a row, says so, then holds the data path until its stdin closes.
_WRITE = """
import asyncio, sys, uuid
from datetime import UTC, datetime
from tablehouse.analytics.store.migrations import migrate
from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget

async def main():
    store = AnalyticsStore(StoreTarget.from_url(sys.argv[1], database="kept"))
    await migrate(store)
    row = [uuid.uuid4(), uuid.uuid4(), "SELECT 1", "ok", None, 1, 1, 1, datetime.now(UTC)]
    await store.insert("query_logs", COLUMNS, [row])
    print("written", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await store.close()

asyncio.run(main())
"""

_READ = """
import asyncio, sys
from tablehouse.analytics.store.migrations import status
from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget, StoreUnavailable

async def main():
    store = AnalyticsStore(StoreTarget.from_url(sys.argv[1], database="kept"))
    try:
        rows = await store.query("SELECT count() AS n FROM query_logs")
        applied = [name for _, name, at in await status(store) if at is not None]
        print(rows[0]["n"], ",".join(applied))
    except StoreUnavailable as exc:
        print("unavailable:", exc)
    await store.close()

asyncio.run(main())
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def run_python(code: str, *args: str) -> str:
    done = subprocess.run(
        python(code, *args), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_data_survives_a_restart_and_one_process_holds_a_path(tmp_path: Path) -> None:
    url = chdb_url(tmp_path / "analytics")
    writer = _WRITE.replace("COLUMNS", repr(QUERY_LOG_COLUMNS))
    with subprocess.Popen(
        python(writer, url), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline() == "written\n"
            refused = run_python(_READ, url)
            assert refused.startswith("unavailable:")
            assert f"is in use by process {holder.pid}" in refused
        finally:
            holder.stdin.close()
            assert holder.wait(timeout=60) == 0
    # A fresh process finds the row and the recorded migrations on disk.
    assert run_python(_READ, url).split() == ["1", ",".join(n for _, n in MIGRATIONS)]


_INSERT_AND_QUERY = """
import asyncio, sys, uuid
from datetime import UTC, datetime
from tablehouse.analytics.store.migrations import migrate
from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget

async def main():
    store = AnalyticsStore(StoreTarget.from_url(sys.argv[1], database="lean"))
    await migrate(store)
    row = [uuid.uuid4(), uuid.uuid4(), "SELECT 1", "ok", None, 1, 1, 1, datetime.now(UTC)]
    await store.insert("query_logs", COLUMNS, [row])
    rows = await store.query("SELECT count() AS n FROM query_logs")
    await store.close()
    print(rows[0]["n"], "pandas" in sys.modules)

asyncio.run(main())
"""


def test_inserts_and_queries_never_load_pandas(tmp_path: Path) -> None:
    """clickhouse-connect would import pandas on the first insert (1.3 s of CPU mid-serving,
    50 MiB that stay resident) only to see that our rows are no DataFrame.
    In a process of its own: another test may have loaded pandas into this one."""
    code = _INSERT_AND_QUERY.replace("COLUMNS", repr(QUERY_LOG_COLUMNS))
    assert run_python(code, chdb_url(tmp_path / "analytics")).split() == ["1", "False"]
