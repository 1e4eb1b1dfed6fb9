"""The analytics store away for a while under load: the API does not notice, and once the store
is back every answered query is in the query log, once.

The server is a real ``tablehouse serve`` process whose store is a ClickHouse server as far
as it can tell (``ANALYTICS_URL=http://...``): the test process's chDB behind ClickHouse's HTTP
interface (``clickhouse_http.py``), reached through a proxy. Cutting the proxy takes the store
away as a ClickHouse outage does (connections reset, then refused); the test then reads the
query log straight from chDB.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget
from tests.faults.clickhouse_http import ClickHouseHttp
from tests.faults.harness import METRICS_TOKEN, server_env, signed_in, wait_until
from tests.support.accounts import bearer
from tests.support.databases import copy_sqlite
from tests.support.processes import running_server
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

CLIENTS = 8
DOWN_FOR = 2.0  # seconds the store stays away once the server has noticed


@dataclass
class Load:
    statuses: list[int] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # query ids of the 200s
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def test_store_away_under_load_costs_the_api_nothing_and_loses_no_query(
    analytics_target: StoreTarget, sqlite_template: Path, tmp_path: Path
) -> None:
    with (
        ClickHouseHttp(analytics_target) as clickhouse,
        TcpProxy("127.0.0.1", clickhouse.port) as path,
    ):
        env = server_env(
            copy_sqlite(sqlite_template, tmp_path),
            tmp_path / "data",
            ANALYTICS_ENABLED="true",
            ANALYTICS_URL=f"http://127.0.0.1:{path.port}/{analytics_target.database}",
            ANALYTICS_FLUSH_INTERVAL_MS="100",
            QUERY_MAX_CONCURRENT_PER_USER=str(2 * CLIENTS),
        )
        with running_server(env, tmp_path / "server.log") as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                sessions = await signed_in(http, "asker@example.com", sessions=CLIENTS)
                await wait_until(lambda: _analytics_is(http, "ok"), within=20, what="store ready")
                load = Load()
                clients = [asyncio.create_task(_client(http, h, load)) for h in sessions]
                try:
                    during = await _store_away_for_a_while(http, path, load)
                    logged = await _logged_once_each(analytics_target, load.answered)
                    history = await http.get(
                        "/api/v1/queries", params={"limit": 1}, headers=sessions[0]
                    )
                finally:
                    load.stop.set()
                    await asyncio.gather(*clients)

    assert set(load.statuses) == {200}, f"not answered: {sorted(set(load.statuses) - {200})}"
    assert during["status"] == "unavailable", during
    assert during["spooled"] > 0, during
    assert logged == dict.fromkeys(load.answered, 1), _difference(logged, load.answered)
    assert history.json()["total"] == len(load.answered)
    assert not clickhouse.errors


async def _store_away_for_a_while(
    http: httpx.AsyncClient, path: TcpProxy, load: Load
) -> dict[str, Any]:
    """Take the store away once queries flow, until the server has spooled events and for
    ``DOWN_FOR`` s more; give it back, and let queries flow a while longer. What readiness
    said about analytics while the store was away."""
    await wait_until(lambda: len(load.answered) >= 100, within=30, what="queries to flow")
    await asyncio.to_thread(path.cut)
    await wait_until(lambda: _spooling(http), within=10, what="the server to spool events")
    await asyncio.sleep(DOWN_FOR)  # the outage itself: its length is the point
    during = await _analytics(http)
    answered_while_away = len(load.answered)
    await asyncio.to_thread(path.restore)
    await wait_until(
        lambda: len(load.answered) >= answered_while_away + 100, within=30, what="more queries"
    )
    load.stop.set()
    return during


async def _client(http: httpx.AsyncClient, headers: dict[str, str], load: Load) -> None:
    number = 0
    while not load.stop.is_set():
        number += 1
        response = await http.post(
            "/api/v1/query", json={"sql": f"SELECT {number} AS n"}, headers=headers
        )
        load.statuses.append(response.status_code)
        if response.status_code == 200:
            load.answered.append(response.json()["query_id"])


async def _analytics(http: httpx.AsyncClient) -> dict[str, Any]:
    ready = await http.get("/health/ready", headers=bearer(METRICS_TOKEN))  # with details
    assert ready.status_code == 200, ready.text
    analytics: dict[str, Any] = ready.json()["analytics"]
    return analytics


async def _analytics_is(http: httpx.AsyncClient, status: str) -> bool:
    return bool((await _analytics(http))["status"] == status)


async def _spooling(http: httpx.AsyncClient) -> bool:
    analytics = await _analytics(http)
    return bool(analytics["status"] == "unavailable" and analytics["spooled"] > 0)


async def _logged_once_each(target: StoreTarget, answered: list[str]) -> dict[str, int]:
    """How often each query id is in the query log, read straight from chDB, once every
    answered query has arrived (the writer retries with a growing pause)."""
    store = AnalyticsStore(target)
    counts: dict[str, int] = {}

    async def all_arrived() -> bool:
        rows = await store.query("SELECT query_id, count() AS n FROM query_logs GROUP BY query_id")
        counts.clear()
        counts.update({str(row["query_id"]): int(row["n"]) for row in rows})
        return set(answered) <= set(counts)

    try:
        await wait_until(all_arrived, within=40, what="every answered query in the log")
    finally:
        await store.close()
    return counts


def _difference(logged: dict[str, int], answered: list[str]) -> str:
    missing = set(answered) - set(logged)
    extra = set(logged) - set(answered)
    twice = {query_id: n for query_id, n in logged.items() if n != 1}
    return f"missing {len(missing)}, unexpected {len(extra)}, not once {len(twice)}: {twice}"
