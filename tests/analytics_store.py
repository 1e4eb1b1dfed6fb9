"""Analytics store fixtures: one chDB data path per test process, a fresh database per test.

chDB runs one engine, on one data path, per process, so every analytics test of a process
shares ``analytics_chdb_path``; isolation comes from a ClickHouse database of its own per test,
dropped afterwards. A test module registers them with::

    pytest_plugins = ["tests.analytics_store"]

(or ``from tests.analytics_store import analytics_store, ...``). The path is derived from the
session's base temp directory, not from a ``mktemp`` of its own: fixtures imported into two
modules are two fixture definitions, and both must still name the same directory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget, chdb_url, quote


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
