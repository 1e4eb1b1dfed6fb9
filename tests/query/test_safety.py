"""POST /query refuses what it must, stops what runs too long, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import tracemalloc
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.app import create_app
from tablehouse.config import Settings
from tablehouse.core.database import pool_figures
from tablehouse.core.events import CollectingEventSink
from tablehouse.query.events import QueryExecuted
from tests.support.accounts import bearer, signed_up
from tests.support.memory import peak_growth, peak_resident_mib, resident_mib
from tests.support.processes import running_server
from tests.support.query_helpers import QUERY, numbers, query, rows_of, shop
from tests.support.serving import runtime_of, started
from tests.support.waiting import wait_until


@pytest.fixture
async def ada(client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await signed_up(client, "ada@example.com")
    headers = bearer(tokens["access_token"])
    await shop(client, headers)
    return headers


def collect_events(app: FastAPI) -> CollectingEventSink:
    sink = CollectingEventSink()
    app.state.runtime = dataclasses.replace(runtime_of(app), events=sink)
    return sink


REFUSED = [
    ("INSERT INTO customers (id, name) VALUES (9, 'Mallory')", 400),
    ("UPDATE customers SET name = 'Mallory'", 400),
    ("DELETE FROM customers", 400),
    ("DROP TABLE customers", 400),
    ("CREATE TABLE stolen AS SELECT * FROM customers", 400),
    ("COPY customers TO '/tmp/stolen.csv'", 400),
    ("WITH gone AS (DELETE FROM customers RETURNING *) SELECT * FROM gone", 400),
    ("SELECT * FROM customers FOR UPDATE", 400),
    ("SELECT 1; DROP TABLE customers", 400),
    ("SELECT set_config('role', 'postgres', false)", 400),
    ("SELECT pg_sleep(10)", 400),
    ("SELECT pg_read_file('/etc/passwd')", 400),
    ("ATTACH DATABASE '/tmp/other.db' AS other", 400),
    ("SELECT * FROM users", 404),
    ("SELECT * FROM sessions", 404),
    ("SELECT * FROM schemas", 404),
    ("SELECT * FROM pg_class", 400),
    ("SELECT * FROM pg_catalog.pg_authid", 400),
    ("SELECT * FROM sqlite_master", 400),
    ("SELECT * FROM information_schema.tables", 400),
    ("SELECT * FROM public.customers", 400),
    ("SELECT * INTO stolen FROM customers", 400),
    ("SELECT load_extension('/tmp/evil.so')", 400),
    ("SELECT * FROM generate_series(1, 100000000)", 400),
]


@pytest.mark.parametrize(("sql", "status"), REFUSED, ids=[sql for sql, _ in REFUSED])
async def test_refused_with_4xx_and_nothing_changed(
    client: httpx.AsyncClient, ada: dict[str, str], sql: str, status: int
) -> None:
    response = await query(client, ada, sql)

    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert await rows_of(client, ada, "SELECT count(*) FROM customers") == [[3]]
    assert (await client.get("/api/v1/users/me", headers=ada)).status_code == 200


async def test_another_users_dataset_cannot_be_reached_by_any_spelling(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    mallory = bearer((await signed_up(client, "mallory@example.com"))["access_token"])
    for sql in (
        "SELECT * FROM customers",
        'SELECT * FROM "customers"',
        "SELECT * FROM (SELECT * FROM customers) AS c",
        "WITH c AS (SELECT 1) SELECT * FROM customers",
    ):
        response = await query(client, mallory, sql)
        assert response.status_code == 404, (sql, response.text)


async def test_api_key_restricted_to_some_datasets_cannot_query_others(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    created = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "report", "scopes": ["query"], "datasets": ["orders"]},
        headers=ada,
    )
    assert created.status_code == 201, created.text
    key = bearer(created.json()["key"])

    allowed = await query(client, key, "SELECT count(*) FROM orders")
    refused = await query(client, key, "SELECT count(*) FROM orders JOIN customers ON true")

    assert allowed.status_code == 200, allowed.text
    assert refused.status_code == 404
    assert "'customers'" in refused.json()["detail"]


async def test_api_key_needs_the_query_scope(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    created = await client.post(
        "/api/v1/auth/api-keys", json={"name": "reader", "scopes": ["read"]}, headers=ada
    )
    key = bearer(created.json()["key"])

    response = await query(client, key, "SELECT count(*) FROM orders")

    assert response.status_code == 403
    assert response.json()["code"] == "scope_required"


async def test_query_needs_a_caller(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/query", json={"sql": "SELECT 1"})
    assert response.status_code == 401


@pytest.fixture
async def big(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    """Ada with 4,000 numbers: crossed with itself three times, far too much to finish."""
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await numbers(client, settings, headers, 4000)
    return headers


async def test_cartesian_join_stops_in_time_and_the_pool_is_left_clean(
    client: httpx.AsyncClient, app: FastAPI, big: dict[str, str], backend: str
) -> None:
    started = time.monotonic()
    response = await query(
        client,
        big,
        "SELECT count(*) FROM numbers a, numbers b, numbers c WHERE a.n + b.n + c.n > 0",
        timeout_ms=500,
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "query_timeout"
    assert elapsed < 0.5 + 0.5
    # The same pool serves the next query, with the default limit and no setting left over.
    assert await rows_of(client, big, "SELECT count(*) FROM numbers") == [[4000]]
    engine = runtime_of(app).query_engine
    assert pool_figures(engine)["checked_out"] == 0
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        if backend == "postgresql":
            assert await raw.fetchval("SHOW statement_timeout") == "0"
            assert await raw.fetchval("SELECT current_user") == "postgres"
            # No transaction left open; read-only is the read engine's default, not a leftover.
            assert not raw.is_in_transaction()
            assert await raw.fetchval("SHOW default_transaction_read_only") == "on"
            assert not raw.is_in_transaction()
        else:
            assert not raw.in_transaction
            cursor = await raw.execute("SELECT count(*) FROM sqlite_master")
            assert (await cursor.fetchone())[0] > 0  # no authorizer left behind


async def test_timeout_can_only_be_lowered(client: httpx.AsyncClient, big: dict[str, str]) -> None:
    started = time.monotonic()
    response = await query(
        client, big, "SELECT count(*) FROM numbers a, numbers b, numbers c", timeout_ms=200
    )

    assert response.json()["code"] == "query_timeout"
    assert time.monotonic() - started < 0.2 + 0.5


async def test_ten_million_result_rows_are_truncated_with_bounded_memory(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await numbers(client, settings, headers, 3163)  # 3163² ≈ 10.0 million

    tracemalloc.start()
    try:
        response = await query(
            client, headers, "SELECT a.n, b.n FROM numbers a CROSS JOIN numbers b"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["truncated"] is True
    assert body["row_count"] == settings.query_max_rows
    assert peak < 64 * 1024**2, f"peak {peak / 1024**2:.1f} MiB"


async def test_result_bytes_are_capped(
    client: httpx.AsyncClient, settings: Settings, app: FastAPI
) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await numbers(client, settings, headers, 2000)
    runtime = runtime_of(app)
    app.state.runtime = dataclasses.replace(
        runtime, settings=settings.model_copy(update={"query_max_result_bytes": 1024})
    )

    response = await query(client, headers, "SELECT n FROM numbers ORDER BY n")

    body = response.json()
    assert body["truncated"] is True
    assert 0 < body["row_count"] < 2000
    assert body["stats"]["bytes_read"] <= 1024


async def test_each_user_may_run_only_so_many_queries_at_once(
    client: httpx.AsyncClient, app: FastAPI, big: dict[str, str]
) -> None:
    runtime = runtime_of(app)
    me = uuid.UUID((await client.get("/api/v1/users/me", headers=big)).json()["id"])
    slow = asyncio.create_task(
        query(client, big, "SELECT count(*) FROM numbers a, numbers b, numbers c", timeout_ms=2000)
    )
    await wait_until(lambda: bool(runtime.query_slots.in_use(me)), what="the slow query runs")
    held = runtime.query_slots.limit
    for _ in range(held - 1):
        runtime.query_slots.acquire(me)

    refused = await query(client, big, "SELECT 1")
    for _ in range(held - 1):
        runtime.query_slots.release(me)
    await slow

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["code"] == "too_many_concurrent_queries"
    assert (await query(client, big, "SELECT 1")).status_code == 200


async def test_every_query_accepted_or_refused_is_an_event(
    client: httpx.AsyncClient, app: FastAPI, ada: dict[str, str]
) -> None:
    sink = collect_events(app)

    await query(client, ada, "SELECT id FROM customers")
    await query(client, ada, "DELETE FROM customers")
    await query(client, ada, "SELECT * FROM nowhere")
    await query(client, ada, "SELECT missing_column FROM customers")

    events = [event for event in sink.events if isinstance(event, QueryExecuted)]
    assert [(event.query_text, event.status) for event in events] == [
        ("SELECT id FROM customers", "ok"),
        ("DELETE FROM customers", "refused"),
        ("SELECT * FROM nowhere", "refused"),
        ("SELECT missing_column FROM customers", "error"),
    ]
    ok = events[0]
    assert ok.error is None
    assert ok.rows_read == 3
    assert ok.bytes_read > 0
    assert ok.execution_time_ms > 0
    assert events[1].error is not None
    assert events[1].error.startswith("not_read_only")
    assert len({event.query_id for event in events}) == 4


async def test_timeout_event_says_timeout(
    client: httpx.AsyncClient, app: FastAPI, big: dict[str, str]
) -> None:
    sink = collect_events(app)

    await query(client, big, "SELECT count(*) FROM numbers a, numbers b, numbers c", timeout_ms=100)

    (event,) = [event for event in sink.events if isinstance(event, QueryExecuted)]
    assert event.status == "timeout"
    assert event.execution_time_ms >= 100


async def test_concurrent_queries_do_not_starve_a_small_pool(settings: Settings) -> None:
    """A query runs on its request's own connection: with more queries at once than pool
    connections, each waits its turn instead of holding one connection and waiting for a
    second (which would starve the pool, every request ending in 503)."""
    small = settings.model_copy(
        update={
            "db_pool_size": 2,
            "db_max_overflow": 0,
            "db_pool_timeout": 5.0,
            "query_max_concurrent_per_user": 16,
        }
    )
    app = create_app(small)
    async with started(app) as client:
        headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
        await shop(client, headers)
        answers = await asyncio.gather(
            *(query(client, headers, "SELECT count(*) FROM orders") for _ in range(12))
        )

    assert [answer.status_code for answer in answers] == [200] * 12


# About a megabyte of text in one value, built by the database.
MEGABYTE_VALUE = {
    "postgresql": "repeat('x', 1000000)",
    "sqlite": "hex(zeroblob(500000))",
}


def many_megabyte_rows(backend: str, count: int = 20000) -> str:
    return (
        f"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < {count}) "
        f"SELECT n, {MEGABYTE_VALUE[backend]} AS filler FROM r"
    )


async def test_large_rows_stop_at_the_byte_cap_without_fetching_the_rest(
    client: httpx.AsyncClient, ada: dict[str, str], settings: Settings, backend: str
) -> None:
    """20,000 rows of a megabyte: the fetch stops at QUERY_MAX_RESULT_BYTES (32 MiB), so
    the answer is a truncated one, and the server holds about the cap, not gigabytes."""
    with peak_growth() as growth:
        response = await query(client, ada, many_megabyte_rows(backend))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["truncated"] is True
    assert 0 < body["row_count"] <= settings.query_max_result_bytes // 1_000_000
    assert body["stats"]["bytes_read"] <= settings.query_max_result_bytes
    assert growth.mib < 250, f"the server grew by {growth.mib:.0f} MiB"


@pytest.mark.slow
async def test_stream_of_large_rows_is_fetched_in_small_batches(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    """A stream fetches a few large rows at a time, not hundreds. Measured on a real server
    process: in-process, the test client's transport would hold the whole stream."""
    env = {
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(tmp_path),
        "ANALYTICS_ENABLED": "false",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
    }
    with running_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
            before = resident_mib(server.process.pid)
            lines = 0
            async with client.stream(
                "POST",
                QUERY,
                json={"sql": many_megabyte_rows(backend), "limit": 300},
                headers={**headers, "Accept": "application/x-ndjson"},
            ) as response:
                assert response.status_code == 200
                async for _ in response.aiter_lines():
                    lines += 1
            growth = peak_resident_mib(server.process.pid) - before

    assert lines == 300
    assert growth < 150, f"the server grew by {growth:.0f} MiB"


@pytest.mark.backends("sqlite")
async def test_sqlite_statement_of_few_slow_steps_stops_at_the_deadline(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str
) -> None:
    """Each row costs few steps but a lot of time (functions over megabytes), so the
    progress handler alone, every 1,000 steps, would notice the deadline seconds late."""
    # 16 MB built per column and row (from n, so it is not computed once for all rows).
    expensive = "length(hex(hex(hex(hex(zeroblob(1000000)) || n))))"
    sql = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) "
        f"SELECT n, {', '.join([expensive] * 6)} FROM r"
    )
    started = time.monotonic()
    response = await query(client, ada, sql, timeout_ms=500)
    elapsed = time.monotonic() - started

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "query_timeout"
    assert elapsed < 0.5 + 1.0, f"stopped after {elapsed:.1f} s"
    assert await rows_of(client, ada, "SELECT count(*) FROM customers") == [[3]]


@pytest.mark.backends("sqlite")
async def test_sqlite_value_built_past_the_value_limit_is_refused_with_bounded_memory(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str
) -> None:
    """hex() doubles its argument: nested eight times, a megabyte would become 256 MB."""
    sql = "SELECT length(" + "hex(" * 8 + "zeroblob(1000000)" + ")" * 8 + ")"
    with peak_growth() as growth:
        response = await query(client, ada, sql)

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "value_too_large"
    assert "QUERY_MAX_VALUE_BYTES" in response.json()["detail"]
    assert growth.mib < 300, f"the server grew by {growth.mib:.0f} MiB"


@pytest.mark.backends("sqlite")
async def test_sqlite_value_limit_applies_to_queries_only_not_to_row_reads(
    client: httpx.AsyncClient, app: FastAPI, ada: dict[str, str], settings: Settings, backend: str
) -> None:
    long_name = "x" * 5000
    stored = await client.post(
        "/api/v1/schemas/customers/rows",
        json=[{"id": 4, "name": long_name, "city": "Paris"}],
        headers=ada,
    )
    assert stored.status_code == 201, stored.text
    app.state.runtime = dataclasses.replace(
        runtime_of(app), settings=settings.model_copy(update={"query_max_value_bytes": 1024})
    )

    refused = await query(client, ada, "SELECT name FROM customers WHERE id = 4")
    small = await rows_of(client, ada, "SELECT name FROM customers WHERE id = 1")
    read = await client.get("/api/v1/schemas/customers/rows/4", headers=ada)

    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "value_too_large"
    assert small == [["Ada"]]
    assert read.status_code == 200, read.text
    assert long_name in read.text


async def test_functions_that_multiply_sizes_cannot_be_composed_past_the_limit(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    """replace() of a megabyte with a 300-character replacement would build 300 MB in the
    database; the guard refuses it before it runs."""
    response = await query(
        client, ada, "SELECT length(replace(repeat('a', 1000000), 'a', repeat('b', 300)))"
    )

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "argument_too_large"
    assert "could build 300000000" in response.json()["detail"]


ENDINGS = [
    ("SELECT n FROM numbers WHERE n = 1", None, 200),  # with its first rows, in one hop
    ("SELECT n FROM numbers", None, 200),  # at a later fetch, which finds the last row
    ("SELECT n FROM numbers", 20, 200),  # cut at the row cap: ended on its own
    ("SELECT n, hex(zeroblob(1000)) FROM numbers", None, 400),  # refused: value_too_large
]


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    ("sql", "limit", "status"), ENDINGS, ids=["one-hop", "later-fetch", "cut", "refused"]
)
async def test_sqlite_value_limit_is_restored_however_a_query_ends(
    settings: Settings, sql: str, limit: int | None, status: int
) -> None:
    """The query's length limit is lifted wherever its run ends: the row read after it,
    on the same (only) connection, is not refused."""
    one = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "query_max_value_bytes": 1024}
    )
    long_name = "x" * 5000
    async with started(create_app(one)) as client:
        headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
        await shop(client, headers)
        await numbers(client, one, headers, 200)
        stored = await client.post(
            "/api/v1/schemas/customers/rows",
            json=[{"id": 4, "name": long_name, "city": "Paris"}],
            headers=headers,
        )
        assert stored.status_code == 201, stored.text

        extra = {} if limit is None else {"limit": limit}
        answered = await query(client, headers, sql, **extra)
        read = await client.get("/api/v1/schemas/customers/rows/4", headers=headers)

    assert answered.status_code == status, answered.text
    if status == 200:
        assert answered.json()["truncated"] is (limit is not None)
    assert read.status_code == 200, read.text
    assert long_name in read.text
