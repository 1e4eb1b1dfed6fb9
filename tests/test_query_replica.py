"""DATABASE_READ_URL: queries run on their own engine (here the same database stands in for
a replica), while sign-in and the catalogue stay on DATABASE_URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.api.runtime import Runtime
from tablehouse.app import create_app
from tablehouse.config import Settings
from tests.accounts import bearer, signed_up
from tests.query_helpers import QUERY, shop


@pytest.fixture
async def replica_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings.model_copy(update={"database_read_url": settings.database_url}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield app, http


async def test_queries_run_on_the_read_engine(
    replica_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = replica_client
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime)
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
    assert runtime.query_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
