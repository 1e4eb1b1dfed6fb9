from __future__ import annotations

import httpx


async def test_liveness_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_reports_database_version_and_pool(
    client: httpx.AsyncClient, backend: str
) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    database = body["database"]
    assert database["status"] == "ok"
    assert database["backend"] == backend
    assert ("PostgreSQL" if backend == "postgresql" else "SQLite") in database["version"]
    assert set(database["pool"]) == {"size", "checked_in", "checked_out", "overflow"}
    assert database["pool"]["size"] == 10


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert len(first.headers["X-Request-ID"]) == 32
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


async def test_a_plain_request_id_from_the_caller_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "lb-1234.abc"})
    assert response.headers["X-Request-ID"] == "lb-1234.abc"


async def test_an_unsafe_request_id_from_the_caller_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": 'x" injected=1'})
    assert response.headers["X-Request-ID"] != 'x" injected=1'
    assert len(response.headers["X-Request-ID"]) == 32
