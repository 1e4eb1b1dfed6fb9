"""Refresh rotation, the lost-response grace window, and reuse detection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.app import create_app
from tablehouse.config import Settings
from tests.support import databases
from tests.support.accounts import bearer, signed_up
from tests.support.clocks import MovingClock

REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/users/me"
GRACE_SECONDS = 1


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return databases.settings_for(
        database_url, tmp_path / "data", refresh_reuse_grace_seconds=GRACE_SECONDS
    )


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock()


@pytest.fixture
def app(settings: Settings, clock: MovingClock) -> FastAPI:
    return create_app(settings, clock=clock)


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


async def _rotate(client: httpx.AsyncClient, pair: dict[str, Any]) -> dict[str, Any]:
    response = await _refresh(client, pair["refresh_token"])
    assert response.status_code == 200, response.text
    rotated: dict[str, Any] = response.json()
    return rotated


async def test_replaying_an_old_refresh_token_revokes_the_whole_session(
    client: httpx.AsyncClient, clock: MovingClock
) -> None:
    first = await signed_up(client, "eve@example.com")
    pairs = [first]
    for _ in range(3):
        pairs.append(await _rotate(client, pairs[-1]))
    clock.advance(GRACE_SECONDS + 0.2)

    replay = await _refresh(client, first["refresh_token"])
    assert replay.status_code == 401
    assert replay.json()["code"] == "refresh_token_reused"

    current = pairs[-1]
    assert (await client.get(ME, headers=bearer(current["access_token"]))).status_code == 401
    assert (await _refresh(client, current["refresh_token"])).status_code == 401
    for pair in pairs:
        assert (await _refresh(client, pair["refresh_token"])).status_code == 401


async def test_reuse_revokes_only_that_session(
    client: httpx.AsyncClient, clock: MovingClock
) -> None:
    stolen = await signed_up(client, "victim@example.com")
    laptop = await signed_up(client, "victim2@example.com")
    await _rotate(client, stolen)
    clock.advance(GRACE_SECONDS + 0.2)
    assert (await _refresh(client, stolen["refresh_token"])).status_code == 401
    assert (await client.get(ME, headers=bearer(laptop["access_token"]))).status_code == 200


async def test_replay_within_the_grace_window_returns_the_current_pair(
    client: httpx.AsyncClient,
) -> None:
    """A client that lost the response to its refresh can ask again and carry on."""
    first = await signed_up(client, "flaky@example.com")
    rotated = await _rotate(client, first)
    again = await _refresh(client, first["refresh_token"])
    assert again.status_code == 200
    assert again.json() == rotated
    assert (await client.get(ME, headers=bearer(rotated["access_token"]))).status_code == 200
    assert (await _rotate(client, rotated))["refresh_token"] != rotated["refresh_token"]


async def test_only_the_latest_retired_token_gets_grace(client: httpx.AsyncClient) -> None:
    first = await signed_up(client, "older@example.com")
    second = await _rotate(client, first)
    await _rotate(client, second)
    response = await _refresh(client, first["refresh_token"])
    assert response.status_code == 401
    assert response.json()["code"] == "refresh_token_reused"


async def test_concurrent_refreshes_of_one_token_issue_at_most_one_pair(
    client: httpx.AsyncClient,
) -> None:
    pair = await signed_up(client, "racer@example.com")
    responses = await asyncio.gather(*(_refresh(client, pair["refresh_token"]) for _ in range(8)))
    statuses = [response.status_code for response in responses]
    assert all(status < 500 for status in statuses), statuses
    issued = {
        response.json()["refresh_token"] for response in responses if response.status_code == 200
    }
    assert len(issued) == 1
    assert statuses.count(200) >= 1
    (token,) = issued
    assert (await _refresh(client, token)).status_code == 200


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await _refresh(client, "not-a-token")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_empty_refresh_token_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(REFRESH, json={"refresh_token": ""})
    assert response.status_code == 422
