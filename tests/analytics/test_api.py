"""Query history and analytics through the API, with the embedded store (chDB) behind it."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.analytics.pipeline.lifecycle import Analytics
from tablehouse.analytics.store.client import StoreTarget, StoreUnavailable
from tablehouse.config import Settings
from tests.support.accounts import bearer, login, promote_to_admin, signed_up
from tests.support.analytics_store import analytics_of, history_of, with_analytics
from tests.support.databases import copy_sqlite, settings_for
from tests.support.serving import serving


async def run(client: httpx.AsyncClient, headers: dict[str, str], sql: str) -> httpx.Response:
    return await client.post("/api/v1/query", json={"sql": sql}, headers=headers)


@pytest.fixture
async def served(
    settings: Settings, analytics_target: StoreTarget, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, dict[str, str]]]:
    async with serving(with_analytics(settings, analytics_target, tmp_path / "spool")) as (
        app,
        client,
    ):
        headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
        yield app, client, headers


async def test_history_lists_each_query_with_status_time_and_rows(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _, client, ada = served
    ok = await run(client, ada, "SELECT 1 AS one UNION ALL SELECT 2")
    refused = await run(client, ada, "DELETE FROM nothing")
    missing = await run(client, ada, "SELECT * FROM nowhere")

    body = await history_of(client, ada, expect=3)

    assert body["total"] == 3
    newest_first = [item["query_text"] for item in body["items"]]
    assert newest_first == [
        "SELECT * FROM nowhere",
        "DELETE FROM nothing",
        "SELECT 1 AS one UNION ALL SELECT 2",
    ]
    by_text = {item["query_text"]: item for item in body["items"]}
    answered = by_text["SELECT 1 AS one UNION ALL SELECT 2"]
    assert answered["query_id"] == ok.json()["query_id"]
    assert answered["status"] == "ok"
    assert answered["error"] is None
    assert answered["rows_read"] == ok.json()["stats"]["rows_read"]
    assert answered["bytes_read"] == ok.json()["stats"]["bytes_read"]
    # To the microsecond, as the answer said it (analytics migration 0004).
    assert answered["execution_time_ms"] == pytest.approx(
        ok.json()["stats"]["execution_time_ms"], abs=0.0005
    )
    assert {item["source"] for item in body["items"]} == {"api"}
    assert by_text["DELETE FROM nothing"]["status"] == "refused"
    assert by_text["DELETE FROM nothing"]["error"].startswith("not_read_only")
    assert refused.status_code == 400
    assert missing.status_code == 404
    assert by_text["SELECT * FROM nowhere"]["error"].startswith("schema_not_found")


async def test_history_filters_pages_and_one_query(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _, client, ada = served
    first = await run(client, ada, "SELECT 'needle'")
    await run(client, ada, "SELECT 2")
    await run(client, ada, "DROP TABLE x")
    await history_of(client, ada, expect=3)

    refused = await client.get("/api/v1/queries", params={"status": "refused"}, headers=ada)
    needle = await client.get("/api/v1/queries", params={"q": "NEEDLE"}, headers=ada)
    page = await client.get("/api/v1/queries", params={"limit": 1, "offset": 1}, headers=ada)
    one = await client.get(f"/api/v1/queries/{first.json()['query_id']}", headers=ada)
    unknown = await client.get(f"/api/v1/queries/{uuid.uuid4()}", headers=ada)
    future = await client.get(
        "/api/v1/queries",
        params={"from": "2999-01-01T00:00:00Z", "to": "3000-01-01T00:00:00Z"},
        headers=ada,
    )
    backwards = await client.get(
        "/api/v1/queries",
        params={"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"},
        headers=ada,
    )

    assert [item["query_text"] for item in refused.json()["items"]] == ["DROP TABLE x"]
    assert [item["query_text"] for item in needle.json()["items"]] == ["SELECT 'needle'"]
    assert page.json()["total"] == 3
    assert [item["query_text"] for item in page.json()["items"]] == ["SELECT 2"]
    assert one.json()["query_text"] == "SELECT 'needle'"
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "query_not_found"
    assert future.json()["total"] == 0
    assert backwards.status_code == 422


@pytest.mark.parametrize("moment", ["9999-12-31T23:00:00-05:00", "0001-01-01T01:00:00+05:00"])
async def test_history_bound_with_no_utc_equivalent_is_422_naming_it(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]], moment: str
) -> None:
    _, client, ada = served
    for path in ("/api/v1/queries", "/api/v1/analytics/queries/summary"):
        for name in ("from", "to"):
            response = await client.get(path, params={name: moment}, headers=ada)
            assert response.status_code == 422, response.text
            [problem] = response.json()["detail"]
            assert problem["loc"] == ["query", name]
            assert "outside the range of date-times" in problem["msg"]


async def test_each_user_sees_only_their_own_unless_admin(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]], settings: Settings
) -> None:
    _, client, ada = served
    grace = bearer((await signed_up(client, "grace@example.com"))["access_token"])
    mine = await run(client, ada, "SELECT 'ada'")
    await run(client, grace, "SELECT 'grace'")
    await history_of(client, ada, expect=1)
    await history_of(client, grace, expect=1)

    graces = await client.get("/api/v1/queries", headers=grace)
    peek = await client.get(f"/api/v1/queries/{mine.json()['query_id']}", headers=grace)
    everyone = await client.get("/api/v1/queries", params={"all_users": "true"}, headers=grace)
    await promote_to_admin(settings, "grace@example.com")
    as_admin = await client.get("/api/v1/queries", params={"all_users": "true"}, headers=grace)
    slowest = await client.get("/api/v1/analytics/queries/slowest", headers=grace)
    by_user = await client.get("/api/v1/analytics/queries/by-user", headers=grace)

    assert [item["query_text"] for item in graces.json()["items"]] == ["SELECT 'grace'"]
    assert peek.status_code == 404
    assert everyone.status_code == 403
    assert as_admin.json()["total"] == 2
    assert len(slowest.json()) == 2
    assert sorted(row["count"] for row in by_user.json()) == [1, 1]


async def _key(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, str]:
    created = await client.post(
        "/api/v1/auth/api-keys", json={"name": "k", "scopes": ["query"], **body}, headers=headers
    )
    assert created.status_code == 201, created.text
    return bearer(created.json()["key"])


async def test_a_dataset_restricted_key_sees_only_the_queries_it_made(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _, client, ada = served
    restricted = await _key(client, ada, datasets=["open"])
    unrestricted = await _key(client, ada)
    owners = await run(client, ada, "SELECT 'what the owner asked about secret'")
    keys = await run(client, restricted, "SELECT 'what the key asked'")
    await history_of(client, ada, expect=2)

    listed = await client.get("/api/v1/queries", headers=restricted)
    peek = await client.get(f"/api/v1/queries/{owners.json()['query_id']}", headers=restricted)
    own = await client.get(f"/api/v1/queries/{keys.json()['query_id']}", headers=restricted)
    summary = await client.get("/api/v1/analytics/queries/summary", headers=restricted)
    everything = await client.get("/api/v1/queries", headers=unrestricted)

    assert [item["query_text"] for item in listed.json()["items"]] == [
        "SELECT 'what the key asked'"
    ]
    assert listed.json()["total"] == 1
    assert peek.status_code == 404
    assert own.status_code == 200
    assert sum(bucket["count"] for bucket in summary.json()["buckets"]) == 1
    assert everything.json()["total"] == 2


async def test_summary_counts_errors_and_times_per_bucket(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _, client, ada = served
    answers = [
        await run(client, ada, sql)
        for sql in ("SELECT 1", "SELECT 2", "SELECT 3", "UPDATE t SET x = 1")
    ]
    await history_of(client, ada, expect=4)

    hourly = await client.get("/api/v1/analytics/queries/summary", headers=ada)
    daily = await client.get(
        "/api/v1/analytics/queries/summary", params={"interval": "day"}, headers=ada
    )

    assert hourly.status_code == 200, hourly.text
    buckets = hourly.json()["buckets"]
    assert sum(bucket["count"] for bucket in buckets) == 4
    assert sum(bucket["errors"] for bucket in buckets) == 1
    assert set(buckets[0]["execution_time_ms"]) == {"p50", "p95", "p99"}
    assert sum(bucket["rows_read"] for bucket in buckets) == sum(
        answer.json()["stats"]["rows_read"] for answer in answers[:3]
    )
    assert sum(bucket["count"] for bucket in daily.json()["buckets"]) == 4


async def test_summary_percentiles_are_the_answers_times_to_the_microsecond(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    """Whole milliseconds made every percentile of a fast dataset 0.0 (or 1.0)."""
    _, client, ada = served
    answers = [await run(client, ada, f"SELECT {n}") for n in range(5)]
    await history_of(client, ada, expect=5)

    summary = await client.get(
        "/api/v1/analytics/queries/summary", params={"interval": "day"}, headers=ada
    )

    times = sorted(answer.json()["stats"]["execution_time_ms"] for answer in answers)
    buckets = summary.json()["buckets"]
    if len(buckets) == 1:  # two if the test spans midnight
        percentiles = buckets[0]["execution_time_ms"]
        # Five values: the median is the third (ClickHouse interpolates between neighbours).
        assert percentiles["p50"] == pytest.approx(times[2], abs=0.002)
        assert times[2] <= percentiles["p95"] <= percentiles["p99"] <= times[4] + 0.002
    for bucket in buckets:
        assert bucket["execution_time_ms"]["p50"] > 0


async def test_history_filters_by_source(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _, client, ada = served
    await run(client, ada, "SELECT 1")
    await history_of(client, ada, expect=1)

    api = await client.get("/api/v1/queries", params={"source": "api"}, headers=ada)
    cli = await client.get("/api/v1/queries", params={"source": "cli"}, headers=ada)
    unknown = await client.get("/api/v1/queries", params={"source": "fax"}, headers=ada)

    assert api.json()["total"] == 1
    assert cli.json()["total"] == 0
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "validation_error", unknown.text


async def test_readiness_reports_where_events_are_to_administrators_only(
    served: tuple[FastAPI, httpx.AsyncClient, dict[str, str]], settings: Settings
) -> None:
    _, client, ada = served
    await run(client, ada, "SELECT 1")
    await history_of(client, ada, expect=1)
    await promote_to_admin(settings, "ada@example.com")
    admin = bearer((await login(client, "ada@example.com"))["access_token"])

    anyone = await client.get("/health/ready")
    analytics = (await client.get("/health/ready", headers=admin)).json()["analytics"]

    assert anyone.json()["analytics"] == {"status": "ok"}
    assert analytics["store"].startswith("chdb:")
    assert analytics["store"] not in anyone.text
    assert analytics["status"] == "ok"
    assert analytics["written"] == 1
    assert analytics["spooled"] == analytics["dead_lettered"] == analytics["lost"] == 0


async def test_history_survives_a_restart(
    settings: Settings, analytics_target: StoreTarget, tmp_path: Path
) -> None:
    configured = with_analytics(settings, analytics_target, tmp_path / "spool")
    async with serving(configured) as (_, client):
        tokens = await signed_up(client, "ada@example.com")
        await run(client, bearer(tokens["access_token"]), "SELECT 'before the restart'")

    async with serving(configured) as (_, client):
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": "ada@example.com", "password": "correct horse battery"},
        )
        body = await history_of(client, bearer(login.json()["access_token"]), expect=1)

    assert [item["query_text"] for item in body["items"]] == ["SELECT 'before the restart'"]


class _Failing:
    """The store, made to fail every insert until ``recover()``."""

    def __init__(self, analytics: Analytics) -> None:
        self._gate = analytics._gate  # the writer's store
        self._real = self._gate.store
        self._gate.store = self

    async def insert(self, *args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("connection refused (test)")

    def recover(self) -> None:
        self._gate.store = self._real


@pytest.mark.slow  # ten thousand queries, then the replay
async def test_store_down_for_ten_thousand_queries_loses_nothing(
    sqlite_template: Path, analytics_target: StoreTarget, tmp_path: Path
) -> None:
    """The API answers as before while the store is away; afterwards every event is in the
    store exactly once. (Backend-independent: runs on SQLite only, for time.)"""
    settings = settings_for(
        copy_sqlite(sqlite_template, tmp_path),
        tmp_path / "data",
        metrics_sample_interval_seconds=3600,  # only query events in the counts below
    )
    async with serving(with_analytics(settings, analytics_target, tmp_path / "spool")) as (
        app,
        client,
    ):
        ada = bearer((await signed_up(client, "ada@example.com"))["access_token"])
        analytics = analytics_of(app)
        await history_of(client, ada, expect=0)
        failing = _Failing(analytics)

        began = time.monotonic()
        statuses = [(await run(client, ada, f"SELECT {n}")).status_code for n in range(10_000)]
        elapsed = time.monotonic() - began
        during = analytics.report()["status"], analytics.writer.counts()
        failing.recover()
        # The writer retries with a backoff of up to 30 s while the store is away, then
        # replays; polling gently leaves the embedded store (one handle) to the replay.
        started = time.monotonic()
        body = await history_of(client, ada, expect=10_000, within=120, poll=1.0)
        caught_up = time.monotonic() - started
        distinct = await analytics.store.query(
            "SELECT count() AS n, uniqExact(query_id) AS distinct_ids FROM query_logs"
        )

    assert statuses == [200] * 10_000
    status, counts = during
    assert status == "unavailable"
    assert counts.spooled + counts.pending == 10_000
    # Partial batches join the spool at most once a second, not once per 50 ms flush.
    assert counts.spooled_batches <= elapsed + 2, (counts.spooled_batches, elapsed)
    assert body["total"] == 10_000, f"{body['total']} after {caught_up:.1f} s"
    assert distinct == [{"n": 10_000, "distinct_ids": 10_000}]
