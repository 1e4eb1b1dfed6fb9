from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tablehouse.config import Settings
from tests.support import databases
from tests.support.accounts import bearer, login, promote_to_admin, signed_up

METRICS_TOKEN = "scraper-token-0123456789"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return databases.settings_for(database_url, tmp_path / "data", metrics_token=METRICS_TOKEN)


async def test_liveness_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_reports_database_version_and_pool_to_the_metrics_token(
    client: httpx.AsyncClient, backend: str
) -> None:
    response = await client.get("/health/ready", headers=bearer(METRICS_TOKEN))
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


async def test_readiness_without_credentials_says_only_whether_each_part_is_up(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": {"status": "ok"},
        "analytics": {"status": "disabled"},
        "replica": None,
    }


async def test_readiness_details_are_for_administrators_signed_in_with_a_password(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await signed_up(client, "root@example.com")
    await promote_to_admin(settings, "root@example.com")
    admin = bearer((await login(client, "root@example.com"))["access_token"])
    key = await client.post(
        "/api/v1/auth/api-keys", json={"name": "k", "scopes": ["read"]}, headers=admin
    )
    user = bearer((await signed_up(client, "user@example.com"))["access_token"])

    seen = {
        who: (await client.get("/health/ready", headers=headers)).json()["database"]
        for who, headers in {
            "admin": admin,
            "admin's key": bearer(key.json()["key"]),
            "user": user,
            "a wrong token": bearer("not-the-metrics-token"),
        }.items()
    }

    assert "version" in seen.pop("admin")
    assert seen == {who: {"status": "ok"} for who in seen}
