"""How many round trips a request makes to PostgreSQL (issue 16: one trip per layer that
needs one), counted through a TCP proxy that counts what the app sends: counts, not times.

A point query makes six: the API key and its user; the datasets the statement names;
``BEGIN READ ONLY; SET LOCAL ROLE; SET LOCAL statement_timeout``; the statement's portal
bound and its rows fetched together; the rows read; ``ROLLBACK``. asyncpg sends one
statement per round trip, and a simple-query batch cannot return the rows-read row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy.engine import make_url

from tablehouse.app import create_app
from tablehouse.config import Settings
from tests.support.accounts import bearer, signed_up
from tests.support.query_helpers import QUERY, shop
from tests.support.serving import started
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.backends("postgresql")

Counted = tuple[TcpProxy, httpx.AsyncClient, dict[str, str]]


@pytest.fixture
async def counted(settings: Settings) -> AsyncIterator[Counted]:
    """An app whose every connection goes through a counting proxy; no idle pings, so that
    a slow moment never adds one."""
    url = make_url(settings.database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        app = create_app(
            settings.model_copy(update={"database_url": proxied, "db_pool_pre_ping": False})
        )
        async with started(app) as client:
            headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
            await shop(client, headers)
            yield proxy, client, headers


async def _round_trips(proxy: TcpProxy, send: Callable[[], Awaitable[httpx.Response]]) -> float:
    """Sends per request, once connections are open and statements prepared."""
    for _ in range(3):
        assert (await send()).status_code == 200
    before, times = proxy.sends, 5
    for _ in range(times):
        response = await send()
        assert response.status_code == 200, response.text
    return (proxy.sends - before) / times


async def _api_key(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    made = await client.post(
        "/api/v1/auth/api-keys", json={"name": "counted", "scopes": ["query"]}, headers=headers
    )
    assert made.status_code == 201, made.text
    return bearer(made.json()["key"])


async def test_the_caller_is_one_round_trip(counted: Counted) -> None:
    proxy, client, headers = counted

    trips = await _round_trips(proxy, lambda: client.get("/api/v1/users/me", headers=headers))

    assert trips == 1


async def test_a_point_query_is_six_round_trips(counted: Counted) -> None:
    proxy, client, headers = counted
    key = await _api_key(client, headers)
    point = {"sql": "SELECT * FROM orders WHERE id = :id", "params": {"id": 1}}

    trips = await _round_trips(proxy, lambda: client.post(QUERY, json=point, headers=key))

    assert trips == 6


async def test_a_statement_that_reads_no_dataset_skips_the_catalogue_and_the_stats(
    counted: Counted,
) -> None:
    proxy, client, headers = counted

    trips = await _round_trips(
        proxy, lambda: client.post(QUERY, json={"sql": "SELECT 1 AS one"}, headers=headers)
    )

    assert trips == 4
