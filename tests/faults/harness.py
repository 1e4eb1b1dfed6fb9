"""What the fault tests share: a real server's settings, signed-in clients, bounded polls,
and the server's own pool gauges."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support import waiting
from tests.support.accounts import bearer, login, register
from tests.support.processes import CHEAP_PASSWORDS
from tests.support.row_tables import define

METRICS_TOKEN = "fault-tests-metrics-token"
ROWS = "/api/v1/schemas/{name}/rows"  # also the route's template in the server's metrics
EVENT_FIELDS = [
    {"name": "id", "type": "integer", "primary_key": True},
    {"name": "client", "type": "integer", "nullable": False},
    {"name": "note", "type": "string"},
]


def server_env(database_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """``tablehouse serve`` settings: no analytics (chDB would start for nothing), cheap
    password hashing (the tests sign in often), and a token for ``GET /metrics``."""
    return {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "JWT_SECRET": "fault-tests-signing-secret-" + "x" * 32,
        **CHEAP_PASSWORDS,
        "ANALYTICS_ENABLED": "false",
        "DB_STARTUP_ATTEMPTS": "1",
        "METRICS_TOKEN": METRICS_TOKEN,
        # The tests play many clients of one account, each loading rows at once.
        "MAX_CONCURRENT_INGESTS_PER_USER": "100",
        **settings,
    }


async def signed_in(http: httpx.AsyncClient, email: str, *, sessions: int) -> list[dict[str, str]]:
    """Register ``email`` and log in ``sessions`` times: one session per simulated client,
    as real clients would have (a write records its session's last use)."""
    await register(http, email)
    return [bearer((await login(http, email))["access_token"]) for _ in range(sessions)]


async def with_events_dataset(
    http: httpx.AsyncClient, headers: dict[str, str], name: str = "events"
) -> str:
    """A dataset of events (``id``, ``client``, ``note``); the path its rows are posted to."""
    await define(http, headers, {"name": name, "fields": EVENT_FIELDS})
    return ROWS.format(name=name)


async def with_numbers_dataset(
    http: httpx.AsyncClient, headers: dict[str, str], count: int
) -> None:
    """A dataset ``numbers`` holding 1..count, loaded through the API."""
    numbers = {"name": "numbers", "fields": [{"name": "n", "type": "integer", "primary_key": True}]}
    await define(http, headers, numbers)
    rows = [{"n": n} for n in range(1, count + 1)]
    loaded = await http.post(ROWS.format(name="numbers"), json=rows, headers=headers)
    assert loaded.status_code == 201, loaded.text


def event_rows(ids: range | list[int], *, client: int) -> list[dict[str, object]]:
    return [{"id": n, "client": client, "note": f"row {n} from client {client}"} for n in ids]


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float, what: str
) -> float:
    """``tests.support.waiting.wait_until``, looking every 0.05 s: each look asks the real
    server."""
    return await waiting.wait_until(condition, within=within, what=what, poll=0.05)


async def _samples(http: httpx.AsyncClient, name: str) -> list[Sample]:
    """The server's own figures, read as a scraper would on ``GET /metrics``."""
    response = await http.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert response.status_code == 200, response.text
    families = text_string_to_metric_families(response.text)
    return [sample for family in families if family.name == name for sample in family.samples]


async def pool_gauges(http: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    """``(pool, state) -> connections``."""
    samples = await _samples(http, "tablehouse_db_pool_connections")
    assert samples, "the server reports no pool gauges"
    return {(s.labels["pool"], s.labels["state"]): s.value for s in samples}


async def requests_handled(http: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    """``(route template, status) -> requests`` the server has finished with."""
    samples = await _samples(http, "tablehouse_http_requests")
    counts: dict[tuple[str, str], float] = {}
    for sample in samples:
        if sample.name.endswith("_total"):
            key = (sample.labels["route"], sample.labels["status"])
            counts[key] = counts.get(key, 0) + sample.value
    return counts


async def checked_out(http: httpx.AsyncClient) -> float:
    """Connections checked out of all the server's pools together."""
    gauges = await pool_gauges(http)
    return sum(value for (_, state), value in gauges.items() if state == "checked_out")


async def ingests_in_progress(http: httpx.AsyncClient) -> float:
    """Row loads the server is working on, or receiving the body of."""
    (sample,) = await _samples(http, "tablehouse_ingests_in_progress")
    return sample.value
