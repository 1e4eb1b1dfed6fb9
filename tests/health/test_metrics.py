"""Metrics: Prometheus text at /metrics, and samples in the analytics store's metrics table."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from tablehouse.analytics.store.client import StoreTarget
from tablehouse.config import Settings
from tests.support.accounts import bearer, promote_to_admin, signed_up
from tests.support.analytics_store import analytics_of, with_analytics
from tests.support.serving import serving
from tests.support.waiting import eventually

TOKEN = "a-scraper-token-of-some-length"


async def test_prometheus_text_counts_requests_by_route_template(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ada = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    for name in ("one", "two"):
        await client.get(f"/api/v1/schemas/{name}", headers=ada)  # 404, by template
    await promote_to_admin(settings, "ada@example.com")

    response = await client.get("/metrics", headers=ada)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    by_template = '{method="GET",route="/api/v1/schemas/{name}",status="404"} 2.0'
    assert f"tablehouse_http_requests_total{by_template}" in text
    assert 'tablehouse_http_request_duration_seconds_bucket{le="0.005",method="GET"' in text
    assert 'tablehouse_db_pool_connections{pool="main",state="size"} 10.0' in text
    assert 'tablehouse_db_pool_connections{pool="reads"' in text
    assert "tablehouse_ingested_rows_total 0.0" in text


async def test_metrics_need_an_administrator_or_the_token(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    ada = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    runtime = app.state.runtime
    app.state.runtime = type(runtime)(
        **{
            **{field: getattr(runtime, field) for field in runtime.__dataclass_fields__},
            "settings": settings.model_copy(update={"metrics_token": SecretStr(TOKEN)}),
        }
    )

    nobody = await client.get("/metrics")
    user = await client.get("/metrics", headers=ada)
    scraper = await client.get("/metrics", headers=bearer(TOKEN))
    wrong = await client.get("/metrics", headers=bearer(TOKEN + "x"))

    assert nobody.status_code == 401
    assert user.status_code == 403
    assert scraper.status_code == 200
    assert "tablehouse_http_requests_total" in scraper.text
    assert wrong.status_code == 401


async def test_ingested_rows_are_counted(client: httpx.AsyncClient, settings: Settings) -> None:
    ada = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await client.post(
        "/api/v1/schemas",
        json={"name": "t", "fields": [{"name": "id", "type": "integer", "primary_key": True}]},
        headers=ada,
    )
    await client.post("/api/v1/schemas/t/rows", json=[{"id": 1}, {"id": 2}], headers=ada)
    await promote_to_admin(settings, "ada@example.com")

    text = (await client.get("/metrics", headers=ada)).text

    assert "tablehouse_ingested_rows_total 2.0" in text


async def test_samples_reach_the_metrics_table_and_the_metrics_endpoint(
    settings: Settings, analytics_target: StoreTarget, tmp_path: Path
) -> None:
    configured = with_analytics(settings, analytics_target, tmp_path / "spool").model_copy(
        update={"metrics_sample_interval_seconds": 0.1}
    )
    async with serving(configured) as (app, client):
        ada = bearer((await signed_up(client, "ada@example.com"))["access_token"])
        await promote_to_admin(settings, "ada@example.com")
        for _ in range(3):
            await client.get("/health")
        store = analytics_of(app).store
        rows = await eventually(
            lambda: store.query(
                "SELECT value, metric_type, tags FROM metrics "
                "WHERE metric_name = 'tablehouse_http_requests_total' "
                "AND tags['route'] = '/health' ORDER BY timestamp DESC LIMIT 1"
            ),
            bool,
            within=5,
            poll=0.1,
        )
        series = await client.get(
            "/api/v1/analytics/metrics",
            params={"name": "tablehouse_db_pool_connections", "step": 60, "aggregation": "max"},
            headers=ada,
        )

    assert rows, "no request counter sample reached the metrics table"
    assert rows[0]["metric_type"] == "counter"
    assert float(str(rows[0]["value"])) >= 3
    assert series.status_code == 200, series.text
    assert series.json()["points"]
    assert series.json()["points"][0]["value"] >= 10


@pytest.mark.parametrize("aggregation", ["avg", "p99"])
async def test_metric_range_is_bounded(
    client: httpx.AsyncClient, settings: Settings, aggregation: str
) -> None:
    ada = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await promote_to_admin(settings, "ada@example.com")

    too_many = await client.get(
        "/api/v1/analytics/metrics",
        params={
            "name": "x",
            "from": "2020-01-01T00:00:00Z",
            "to": "2021-01-01T00:00:00Z",
            "step": 1,
            "aggregation": aggregation,
        },
        headers=ada,
    )
    disabled = await client.get("/api/v1/analytics/metrics", params={"name": "x"}, headers=ada)

    assert too_many.status_code in (404, 422)
    assert disabled.status_code == 404
    assert disabled.json()["code"] == "analytics_disabled"
