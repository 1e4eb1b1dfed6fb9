"""DATABASE_READ_URL: queries run on their own engine (here the same database stands in for
a replica), while sign-in and the catalogue stay on DATABASE_URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from tablehouse.app import create_app
from tablehouse.config import Settings
from tablehouse.core.database import pool_figures
from tests.support.accounts import bearer, signed_up
from tests.support.query_helpers import QUERY, shop
from tests.support.serving import runtime_of, started
from tests.support.tcp_proxy import TcpProxy

METRICS_TOKEN = "replica-tests-metrics-token"


@pytest.fixture
async def replica_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(
        settings.model_copy(
            update={
                "database_read_url": settings.database_url,
                "metrics_token": SecretStr(METRICS_TOKEN),
            }
        )
    )
    async with started(app) as http:
        yield app, http


async def test_queries_run_on_the_read_engine(
    replica_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = replica_client
    runtime = runtime_of(app)
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await shop(client, headers)

    answered = await client.post(
        QUERY, json={"sql": "SELECT count(*) FROM orders"}, headers=headers
    )
    streamed = await client.post(
        QUERY,
        json={"sql": "SELECT id FROM orders ORDER BY id"},
        headers={**headers, "Accept": "text/csv"},
    )

    assert answered.status_code == 200, answered.text
    assert answered.json()["rows"] == [[5]]
    assert streamed.text.splitlines() == ["id", "10", "11", "12", "13", "14"]
    assert runtime.query_engine is not runtime.engine
    assert pool_figures(runtime.query_engine)["checked_out"] == 0


async def test_readiness_shows_the_read_pool_and_the_replica(
    replica_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = replica_client

    body = (await client.get("/health/ready", headers=bearer(METRICS_TOKEN))).json()

    assert body["status"] == "ok"
    assert set(body["database"]["read_pool"]) == {"size", "checked_in", "checked_out", "overflow"}
    assert body["replica"]["status"] == "ok"


@pytest.mark.backends("postgresql")
async def test_unreachable_replica_makes_the_instance_unready_and_queries_503(
    settings: Settings, backend: str
) -> None:
    primary = make_url(settings.database_url)
    with TcpProxy(primary.host or "127.0.0.1", primary.port or 5432) as proxy:
        replica_url = primary.set(host="127.0.0.1", port=proxy.port)
        app = create_app(
            settings.model_copy(
                update={
                    "database_read_url": replica_url.render_as_string(hide_password=False),
                    "db_connect_timeout": 2.0,
                }
            )
        )
        async with started(app) as client:
            headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
            await shop(client, headers)
            proxy.cut()

            ready = await client.get("/health/ready")
            answered = await client.post(
                QUERY, json={"sql": "SELECT count(*) FROM orders"}, headers=headers
            )

    assert ready.status_code == 503
    assert ready.json()["database"]["status"] == "ok"
    assert ready.json()["replica"]["status"] == "unreachable"
    assert answered.status_code == 503, answered.text
    assert answered.headers["retry-after"]
