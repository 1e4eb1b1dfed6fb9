"""Regressions for what the schemathesis run (tests/test_api_fuzz.py) found, one per finding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.analytics.store import StoreTarget
from tablehouse.config import Settings
from tests.accounts import bearer, signed_up
from tests.query_helpers import CUSTOMERS
from tests.test_analytics_api import history_of, serving, with_analytics

NUL = "a\x00b"


@pytest.fixture
async def ada(client: httpx.AsyncClient) -> dict[str, str]:
    return bearer((await signed_up(client, "ada@example.com"))["access_token"])


def assert_refused_at(response: httpx.Response, location: list[str | int], words: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    problem = next(p for p in body["detail"] if p["loc"] == location)
    assert words in problem["msg"]


async def test_nul_in_an_api_key_name_is_a_422_not_a_500(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/auth/api-keys", json={"name": NUL, "scopes": ["query"]}, headers=ada
    )
    assert_refused_at(response, ["body", "name"], "NUL character")
    keys = await client.get("/api/v1/auth/api-keys", headers=ada)
    assert keys.json() == []


async def test_nul_in_a_full_name_is_refused(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.patch("/api/v1/users/me", json={"full_name": NUL}, headers=ada)
    assert_refused_at(response, ["body", "full_name"], "NUL character")


async def test_nul_in_dataset_descriptions_and_defaults_is_refused_and_nothing_is_created(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    described = {**CUSTOMERS, "description": NUL}
    response = await client.post("/api/v1/schemas", json=described, headers=ada)
    assert_refused_at(response, ["body", "description"], "NUL character")

    fields = [*CUSTOMERS["fields"], {"name": "note", "type": "string", "default": NUL}]
    response = await client.post(
        "/api/v1/schemas", json={**CUSTOMERS, "fields": fields}, headers=ada
    )
    assert response.status_code == 422, response.text
    assert "NUL character" in response.text

    listed = await client.get("/api/v1/schemas", headers=ada)
    assert listed.json()["total"] == 0


async def test_an_offset_beyond_any_integer_column_is_a_422_not_a_500(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    huge = await client.get("/api/v1/schemas", params={"offset": 2**64}, headers=ada)
    assert huge.status_code == 422, huge.text
    assert huge.json()["detail"][0]["loc"] == ["query", "offset"]

    largest = await client.get("/api/v1/schemas", params={"offset": 2**31 - 1}, headers=ada)
    assert largest.status_code == 200, largest.text
    assert largest.json()["items"] == []


@pytest.fixture
async def analytics_client(
    settings: Settings, analytics_target: StoreTarget, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serving(with_analytics(settings, analytics_target, tmp_path / "spool")) as served:
        yield served


@pytest.mark.parametrize(
    ("path", "params", "logged"),
    [
        ("/api/v1/queries", {"from": "1150-02-26T02:09:53+22:50"}, 1),
        ("/api/v1/queries", {"to": "0077-02-06T18:38:20Z"}, 0),
        ("/api/v1/queries", {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T00:00:00Z"}, 1),
        ("/api/v1/queries", {"from": "2400-01-01T00:00:00Z", "to": "2500-01-01"}, 0),
        ("/api/v1/analytics/queries/summary", {"to": "0380-03-30T11:47:42.3-18:12"}, None),
        (
            "/api/v1/analytics/queries/summary",
            {"from": "0001-01-01T00:00:00Z", "to": "1901-01-01", "interval": "day"},
            None,
        ),
    ],
)
async def test_history_times_beyond_the_logs_range_mean_its_ends_not_a_500(
    analytics_client: tuple[FastAPI, httpx.AsyncClient],
    path: str,
    params: dict[str, str],
    logged: int | None,
) -> None:
    _, client = analytics_client
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    ran = await client.post("/api/v1/query", json={"sql": "SELECT 1"}, headers=headers)
    assert ran.status_code == 200, ran.text
    await history_of(client, headers, expect=1)

    response = await client.get(path, params=params, headers=headers)

    assert response.status_code == 200, response.text
    if logged is not None:
        assert response.json()["total"] == logged


async def test_history_times_are_iso_8601_not_unix_seconds(
    analytics_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = analytics_client
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    seconds = await client.get("/api/v1/queries", params={"to": "466853"}, headers=headers)
    assert_refused_at(seconds, ["query", "to"], "ISO 8601")

    iso = await client.get(
        "/api/v1/queries", params={"to": "2026-01-31T12:00:00Z"}, headers=headers
    )
    assert iso.status_code == 200, iso.text
