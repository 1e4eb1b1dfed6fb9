"""Every pooled connection held by slow queries: further requests are told to retry within
about the pool timeout, as JSON, instead of waiting on or failing with a raw pool error."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.faults.harness import (
    checked_out,
    server_env,
    signed_in,
    wait_until,
    with_numbers_dataset,
)
from tests.faults.postgres import admin_rows
from tests.support.processes import running_server

pytestmark = [pytest.mark.slow, pytest.mark.backends("postgresql")]

POOL_SIZE = 2
POOL_TIMEOUT = 0.5
SLOW_MS = 2000
# A cartesian product far too big to finish: it runs until its time limit.
SLOW = "SELECT count(*) FROM numbers a, numbers b, numbers c WHERE a.n + b.n + c.n > 0"
EXTRA = 10


async def test_requests_beyond_the_pool_get_503_database_busy_within_the_pool_timeout(
    database_url: str, tmp_path: Path, backend: str
) -> None:
    database = make_url(database_url).database
    assert database
    env = server_env(
        database_url,
        tmp_path / "data",
        DB_POOL_SIZE=str(POOL_SIZE),
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT=str(POOL_TIMEOUT),
        QUERY_MAX_CONCURRENT_PER_USER="20",
    )
    with running_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            (headers,) = await signed_in(http, "busy@example.com", sessions=1)
            await with_numbers_dataset(http, headers, 1000)
            slow = [
                asyncio.create_task(_query(http, headers, SLOW, timeout_ms=SLOW_MS))
                for _ in range(POOL_SIZE)
            ]
            await wait_until(
                lambda: _running(database, POOL_SIZE), within=10, what="the slow queries to run"
            )
            extra = await asyncio.gather(*(_timed_extra(http, headers, n) for n in range(EXTRA)))
            stopped = await asyncio.gather(*slow)
            after = await http.get("/api/v1/users/me", headers=headers)
            idle = await checked_out(http)

    for response, _ in stopped:
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "query_timeout"
    for response, seconds in extra:
        assert response.status_code == 503, response.text
        assert response.json() == {
            "detail": "every database connection is in use; retry shortly",
            "code": "database_busy",
        }
        assert response.headers["retry-after"] == "1"
        # It waited for a connection as long as DB_POOL_TIMEOUT says, and no longer.
        assert POOL_TIMEOUT * 0.8 <= seconds < POOL_TIMEOUT + 1.0, seconds
    assert after.status_code == 200, after.text
    assert idle == 0


async def _query(
    http: httpx.AsyncClient, headers: dict[str, str], sql: str, **extra: object
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await http.post("/api/v1/query", json={"sql": sql, **extra}, headers=headers)
    return response, time.monotonic() - started


async def _timed_extra(
    http: httpx.AsyncClient, headers: dict[str, str], number: int
) -> tuple[httpx.Response, float]:
    """A read of one's account, or a quick query: both need a connection of the read pool."""
    if number % 2:
        return await _query(http, headers, "SELECT count(*) FROM numbers")
    started = time.monotonic()
    response = await http.get("/api/v1/users/me", headers=headers)
    return response, time.monotonic() - started


async def _running(database: str, count: int) -> bool:
    rows = await admin_rows(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'active' "
        "AND query ILIKE '%count(*)%'",
        database,
    )
    return int(rows[0]["n"]) >= count
