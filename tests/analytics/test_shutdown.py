"""SIGTERM under load: every answered query's event is written or spooled, and the next
start writes what was spooled (real server processes with embedded chDB)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import PASSWORD
from tests.support.processes import run_tablehouse, running_server

pytestmark = pytest.mark.slow


def _sign_in(base: str) -> dict[str, str]:
    with httpx.Client(base_url=base, timeout=10) as http:
        http.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD})
        login = http.post(
            "/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _query_until_refused(base: str, headers: dict[str, str], answered: list[str]) -> None:
    """One client sending queries until the server stops answering."""
    with httpx.Client(base_url=base, timeout=10) as http:
        for n in range(100_000):
            try:
                response = http.post("/api/v1/query", json={"sql": f"SELECT {n}"}, headers=headers)
            except httpx.TransportError:
                return
            if response.status_code == 200:
                answered.append(response.json()["query_id"])


def test_sigterm_under_load_loses_no_event(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tablehouse.db'}",
        "DATA_DIR": str(tmp_path),
        "QUERY_MAX_CONCURRENT_PER_USER": "8",
        # Long enough that events are still in memory when the signal comes.
        "ANALYTICS_FLUSH_INTERVAL_MS": "5000",
        "ANALYTICS_BATCH_SIZE": "100000",
    }
    assert run_tablehouse("db", "init", env=env).returncode == 0
    answered: list[str] = []
    with running_server(env, tmp_path / "first.log") as server:
        headers = _sign_in(server.base_url)
        clients = [
            threading.Thread(target=_query_until_refused, args=(server.base_url, headers, answered))
            for _ in range(4)
        ]
        for client in clients:
            client.start()
        while len(answered) < 300:
            threading.Event().wait(0.05)
        # uvicorn shuts down gracefully, then exits by the signal it got.
        assert server.stop() in (0, -signal.SIGTERM), server.output()
        assert "Application shutdown complete" in server.output()
        for client in clients:
            client.join(timeout=30)

    with (
        running_server(env, tmp_path / "second.log") as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        login = http.post(
            "/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        logged: set[str] = set()
        for offset in range(0, len(answered) + 200, 200):
            page = http.get(
                "/api/v1/queries", params={"limit": 200, "offset": offset}, headers=headers
            ).json()
            logged |= {item["query_id"] for item in page["items"]}

    assert len(answered) >= 300
    assert set(answered) <= logged, f"{len(set(answered) - logged)} answered queries not logged"
