"""Analytics store fixtures: one chDB data path per test process, a fresh database per test.

chDB runs one engine, on one data path, per process, so every analytics test of a process
shares ``analytics_chdb_path``; isolation comes from a ClickHouse database of its own per test,
dropped afterwards. A test module registers them with::

    pytest_plugins = ["tests.support.analytics_store"]

(or ``from tests.support.analytics_store import analytics_store, ...``). The path is derived
from the session's base temp directory, not from a ``mktemp`` of its own: fixtures imported into two
modules are two fixture definitions, and both must still name the same directory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.analytics.pipeline.lifecycle import Analytics
from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget, chdb_url, quote
from tablehouse.api.runtime import Runtime
from tablehouse.config import Settings
from tests.support.waiting import eventually

FLUSH_MS = 50  # the app's flush interval in tests that read what it wrote


def with_analytics(settings: Settings, target: StoreTarget, spool: Path) -> Settings:
    """``settings`` with analytics on, writing to ``target`` every ``FLUSH_MS``."""
    return settings.model_copy(
        update={
            "analytics_enabled": True,
            "analytics_url": target.url,
            "analytics_database": target.database,
            "analytics_spool_dir": spool,
            "analytics_flush_interval_ms": FLUSH_MS,
        }
    )


def analytics_of(app: FastAPI) -> Analytics:
    runtime: Runtime = app.state.runtime
    analytics = runtime.analytics
    assert isinstance(analytics, Analytics)
    return analytics


async def history_of(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    expect: int,
    within: float = FLUSH_MS / 1000 + 2,
    poll: float = 0.05,
    **params: Any,
) -> dict[str, Any]:
    """GET /queries once it holds ``expect`` queries (by default within the flush interval
    + 2 s once the store is open, as the issue asks), asking every ``poll`` seconds; what it
    holds then, if it never does."""

    async def look() -> dict[str, Any]:
        response = await client.get("/api/v1/queries", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def complete(body: dict[str, Any]) -> bool:
        # Items and total are two statements; wait until both have caught up.
        return bool(body["total"] >= expect and len(body["items"]) >= min(expect, body["limit"]))

    # The embedded store opens at its first use (this read, or the writer's first batch,
    # whichever comes first): seconds of loading chDB that the window does not count.
    first = await look()
    if complete(first):
        return first
    return await eventually(look, complete, within=within, poll=poll)


def fresh_database_name() -> str:
    return f"th_test_{uuid.uuid4().hex[:12]}"


def chdb_path_for(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chDB data directory of this test process."""
    return tmp_path_factory.getbasetemp() / "analytics-chdb"


async def drop_database(target: StoreTarget) -> None:
    store = AnalyticsStore(target)
    try:
        await store.command(f"DROP DATABASE IF EXISTS {quote(target.database)} SYNC")
    finally:
        await store.close()


@pytest.fixture(scope="session")
def analytics_chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chdb_path_for(tmp_path_factory)


@pytest.fixture
async def analytics_target(analytics_chdb_path: Path) -> AsyncIterator[StoreTarget]:
    """An embedded target on a database no other test uses; dropped after the test."""
    target = StoreTarget.from_url(chdb_url(analytics_chdb_path), database=fresh_database_name())
    yield target
    await drop_database(target)


@pytest.fixture
async def analytics_store(analytics_target: StoreTarget) -> AsyncIterator[AnalyticsStore]:
    """A connected store on ``analytics_target`` (not migrated), closed after the test."""
    store = AnalyticsStore(analytics_target)
    await store.connect()
    yield store
    await store.close()
