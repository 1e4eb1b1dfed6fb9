"""Reads go on while another connection holds the write lock (SQLite has one writer)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tablehouse.config import Settings
from tablehouse.core.database import create_engine
from tests.support import databases
from tests.support.accounts import bearer, signed_up


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return databases.settings_for(database_url, tmp_path / "data", sqlite_busy_timeout_ms=300)


async def test_reads_are_not_blocked_by_a_long_write_and_writes_get_503_not_500(
    client: httpx.AsyncClient, settings: Settings, backend: str
) -> None:
    headers = bearer((await signed_up(client, "reader@example.com"))["access_token"])
    engine = create_engine(settings)
    try:
        async with engine.connect() as writer:
            # Another process's long write, holding SQLite's write lock until it ends.
            await writer.execute(text("UPDATE users SET full_name = 'busy'"))
            started = time.monotonic()
            ready = await client.get("/health/ready")
            listed = await client.get("/api/v1/schemas", headers=headers)
            me = await client.get("/api/v1/users/me", headers=headers)
            elapsed = time.monotonic() - started
            create = await client.post(
                "/api/v1/schemas",
                json={
                    "name": "t",
                    "fields": [{"name": "id", "type": "integer", "primary_key": True}],
                },
                headers=headers,
            )
            await writer.rollback()
    finally:
        await engine.dispose()
    assert (ready.status_code, listed.status_code, me.status_code) == (200, 200, 200)
    assert elapsed < 0.3, "reads must not wait for the writer"
    if backend == "sqlite":
        assert create.status_code == 503
        assert create.json()["code"] == "database_busy"
        assert create.headers["Retry-After"] == "1"
    else:
        assert create.status_code == 201
