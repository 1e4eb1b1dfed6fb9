"""The embedded store (chDB) is opened on first use, not at start-up: a server that has
logged nothing does not carry chDB's memory; its first query still lands in the query log."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget
from tablehouse.analytics.store.residency import release_start_up_pages
from tablehouse.config import Settings
from tests.support.accounts import bearer, signed_up
from tests.support.analytics_store import analytics_of, history_of, with_analytics
from tests.support.processes import CHEAP_PASSWORDS, initialised_database, running_server
from tests.support.serving import serving
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/maps").exists(), reason="reads a process's mappings in /proc"
)

OWNER, PASSWORD = "ada@example.com", "long enough password"


def maps_chdb(pid: int) -> bool:
    """Whether process ``pid`` has chDB's engine library mapped (it has loaded chDB)."""
    return "/_chdb." in Path(f"/proc/{pid}/maps").read_text()


def test_a_server_loads_chdb_at_its_first_write_and_logs_the_first_query(
    tmp_path: Path,
) -> None:
    env = {
        **initialised_database(tmp_path, owner=OWNER),
        **CHEAP_PASSWORDS,
        "ANALYTICS_ENABLED": "true",  # the embedded store in DATA_DIR/analytics, by default
        "ANALYTICS_FLUSH_INTERVAL_MS": "50",
        "METRICS_SAMPLE_INTERVAL_SECONDS": "3600",  # no metrics sample writes meanwhile
    }
    with running_server(env, tmp_path / "server.log") as server:
        pid = server.process.pid
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            ready = client.get("/health/ready").json()
            loaded_at_start = maps_chdb(pid)
            token = client.post("/api/v1/auth/login", json={"email": OWNER, "password": PASSWORD})
            headers = bearer(token.json()["access_token"])
            answered = client.post("/api/v1/query", json={"sql": "SELECT 1"}, headers=headers)
            # Nothing has read the log yet: what opens chDB is the writer's first batch.
            wait_until_sync(lambda: maps_chdb(pid), within=60, what="chDB is loaded", poll=0.05)
            logged = client.get("/api/v1/queries", headers=headers).json()
            ready_after = client.get("/health/ready").json()

    assert ready["analytics"] == {"status": "idle"}
    assert ready_after["analytics"] == {"status": "ok"}
    assert not loaded_at_start
    assert answered.status_code == 200, answered.text
    assert logged["total"] == 1
    assert logged["items"][0]["query_id"] == answered.json()["query_id"]


async def test_reading_the_log_before_anything_was_written_finds_it_empty(
    settings: Settings, analytics_target: StoreTarget, tmp_path: Path
) -> None:
    """The first read prepares the store (its tables are made on first use)."""
    configured = with_analytics(settings, analytics_target, tmp_path / "spool").model_copy(
        update={"metrics_sample_interval_seconds": 3600}
    )
    async with serving(configured) as (app, client):
        ada = bearer((await signed_up(client, "ada@example.com"))["access_token"])
        before = await client.get("/api/v1/queries", headers=ada)
        status = analytics_of(app).report()["status"]
        await client.post("/api/v1/query", json={"sql": "SELECT 1"}, headers=ada)
        after = await history_of(client, ada, expect=1)

    assert before.status_code == 200, before.text
    assert before.json()["total"] == 0
    assert status == "ok"
    assert after["total"] == 1


async def test_a_server_stopped_before_its_first_write_still_writes_its_last_events(
    settings: Settings, analytics_target: StoreTarget, tmp_path: Path
) -> None:
    """Shutdown writes the events in memory (here the last metrics samples), opening the
    store for them if nothing had yet."""
    configured = with_analytics(settings, analytics_target, tmp_path / "spool").model_copy(
        update={"metrics_sample_interval_seconds": 3600}
    )
    app: FastAPI
    async with serving(configured) as (app, client):
        await client.get("/health")
    counts = analytics_of(app).writer.counts()

    store = AnalyticsStore(analytics_target)
    try:
        rows = await store.query("SELECT count() AS n FROM metrics")
    finally:
        await store.close()
    assert counts.written > 0
    assert counts.spooled == counts.lost == 0
    assert rows[0]["n"] == counts.written


async def test_the_store_answers_after_its_start_up_pages_are_released(
    analytics_store: AnalyticsStore,
) -> None:
    """Dropping chDB's clean library pages leaves nothing it needs behind: they come back
    from the file on use."""
    await analytics_store.query("SELECT version()")  # what it ran is resident again
    released = release_start_up_pages()
    await analytics_store.command("CREATE TABLE t (n UInt64) ENGINE = MergeTree ORDER BY n")
    await analytics_store.insert("t", ["n"], [[1], [2], [3]])
    rows = await analytics_store.query("SELECT sum(n) AS total, version() AS v FROM t")

    assert released > 0
    assert rows[0]["total"] == 6
