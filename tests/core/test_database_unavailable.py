"""A database that cannot take a request now is a retryable 503 with Retry-After, never a 500."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from tablehouse.config import Settings
from tests.support.accounts import bearer, signed_up
from tests.support.serving import runtime_of, serving
from tests.support.tcp_proxy import TcpProxy


async def test_every_connection_in_use_is_503_database_busy(settings: Settings) -> None:
    small = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.2}
    )
    async with serving(small) as (app, client):
        headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
        runtime = runtime_of(app)
        async with runtime.read_engine.connect() as held:
            await held.get_raw_connection()
            response = await client.get("/api/v1/users/me", headers=headers)
        after = await client.get("/api/v1/users/me", headers=headers)

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "database_busy"
    assert response.headers["retry-after"] == "1"
    assert after.status_code == 200


@pytest.mark.backends("postgresql")
async def test_database_gone_is_503_database_unavailable_then_back(
    settings: Settings, backend: str
) -> None:
    url = make_url(settings.database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        async with serving(
            settings.model_copy(update={"database_url": proxied, "db_connect_timeout": 2.0})
        ) as (_, client):
            headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
            proxy.cut()
            read = await client.get("/api/v1/users/me", headers=headers)
            query = await client.post("/api/v1/query", json={"sql": "SELECT 1"}, headers=headers)
            proxy.restore()
            back = await client.get("/api/v1/users/me", headers=headers)

    for response in (read, query):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "1"
    assert back.status_code == 200
