"""The real ``tablehouse serve`` process: start-up checks, retries, readiness through an outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy.engine import make_url

from tests.support import databases
from tests.support.processes import run_tablehouse, running_server
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://root@db/app", "DATABASE_URL: unsupported database"),
        ("DB_POOL_SIZE", "-5", "DB_POOL_SIZE: Input should be greater than or equal to 1"),
        ("ENVIRONMENT", "production", "JWT_SECRET must be set when ENVIRONMENT=production"),
    ],
)
def test_bad_setting_stops_start_up_fast_with_one_line(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    started = time.monotonic()
    result = run_tablehouse("serve", env={variable: value, "DATA_DIR": str(tmp_path)}, timeout=10)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    # No retries and no database connection before the settings are known to be good
    # (about 1 s here); the bound is loose so a busy CI machine does not flake.
    assert elapsed < 5
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert expected in lines[0]


def test_an_unmigrated_database_stops_start_up_with_what_to_run(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}", "DATA_DIR": str(tmp_path)}
    result = run_tablehouse("serve", env=env, timeout=30)
    assert result.returncode != 0
    failures = [r for r in _json_records(result.stderr) if r.get("event") == "app.start_failed"]
    assert len(failures) == 1
    assert "run 'tablehouse db init' first" in str(failures[0]["reason"])


def test_secret_in_a_bad_url_is_not_printed(tmp_path: Path) -> None:
    result = run_tablehouse(
        "serve", env={"DATABASE_URL": "mysql://u:s3cr3t-pw@h/db", "DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert "s3cr3t-pw" not in result.stderr + result.stdout


def test_unreachable_database_is_retried_then_the_process_exits(tmp_path: Path) -> None:
    closed_port = make_url(databases.postgres_url("x")).set(host="127.0.0.1", port=1)
    env = {
        "DATABASE_URL": closed_port.render_as_string(hide_password=False),
        "DATA_DIR": str(tmp_path),
        "DB_STARTUP_ATTEMPTS": "3",
        "DB_STARTUP_RETRY_DELAY": "0.5",
    }
    started = time.monotonic()
    result = run_tablehouse("serve", env=env, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert 1.0 <= elapsed < 15, "two 0.5 s pauses between three attempts, then give up"
    records = _json_records(result.stderr)
    attempts = [r["attempt"] for r in records if r.get("event") == "database.unreachable"]
    assert attempts == [1, 2, 3]
    failures = [r for r in records if r.get("event") == "app.start_failed"]
    assert len(failures) == 1
    assert "did not answer after 3 attempt(s)" in str(failures[0]["reason"])
    assert "Traceback" not in result.stderr, "an expected failure is one line, not a stack"


def test_served_app_answers_and_logs_request_ids_as_json(
    sqlite_template: Path, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": databases.copy_sqlite(sqlite_template, tmp_path),
        "DATA_DIR": str(tmp_path),
        "JWT_SECRET": "never-log-me-" + "x" * 30,
        "METRICS_TOKEN": "server-tests-metrics-token",
    }
    with running_server(env, tmp_path / "server.log") as server:
        health = httpx.get(f"{server.base_url}/health")
        ready = httpx.get(
            f"{server.base_url}/health/ready",
            headers={"Authorization": "Bearer server-tests-metrics-token"},
        )
        server.stop()
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["database"]["version"].startswith("SQLite")
    records = _json_records(server.output())
    request_lines = [r for r in records if r.get("event") == "request"]
    logged_ids = {r["request_id"] for r in request_lines}
    assert {health.headers["X-Request-ID"], ready.headers["X-Request-ID"]} <= logged_ids
    assert any(r.get("event") == "database.ready" and "version" in r for r in records)
    assert "never-log-me" not in server.output()


@pytest.fixture
def proxied_postgres(postgres_template: str) -> Iterator[tuple[TcpProxy, str]]:
    name = databases.create_postgres_database(template=postgres_template)
    admin = make_url(databases.POSTGRES_ADMIN_URL)
    try:
        with TcpProxy(admin.host or "127.0.0.1", admin.port or 5432) as proxy:
            url = make_url(databases.postgres_url(name)).set(host="127.0.0.1", port=proxy.port)
            yield proxy, url.render_as_string(hide_password=False)
    finally:
        databases.drop_postgres_database(name)


def test_readiness_follows_the_database_down_and_back_up(
    proxied_postgres: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    proxy, url = proxied_postgres
    env = {"DATABASE_URL": url, "DATA_DIR": str(tmp_path), "DB_CONNECT_TIMEOUT": "2"}
    with running_server(env, tmp_path / "server.log") as server:
        ready_url = f"{server.base_url}/health/ready"
        assert httpx.get(ready_url, timeout=10).status_code == 200

        proxy.cut()
        down = httpx.get(ready_url, timeout=10)
        assert down.status_code == 503
        assert down.json()["database"]["status"] == "unreachable"
        assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200

        proxy.restore()
        assert _seconds_until_ready(ready_url, within=10) < 5


def _seconds_until_ready(url: str, *, within: float) -> float:
    return wait_until_sync(
        lambda: httpx.get(url, timeout=5).status_code == 200,
        within=within,
        what="ready",
        poll=0.2,
    )


def _json_records(output: str) -> list[dict[str, object]]:
    records = []
    for line in output.splitlines():
        if line.startswith("{"):
            records.append(orjson.loads(line))
    return records


def test_a_served_ingest_over_the_limit_is_413_whether_or_not_the_size_is_declared(
    tmp_path: Path,
) -> None:
    """Real HTTP: the client gets the 413 (not a reset connection) and nothing is written."""
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'limit.db'}",
        "DATA_DIR": str(tmp_path),
        "MAX_INGEST_BYTES": str(1024 * 1024),
    }
    assert run_tablehouse("db", "init", env=env).returncode == 0
    body = ("id,title\n" + "".join(f"{n},{'x' * 40}\n" for n in range(75_000))).encode()
    with (
        running_server(env, tmp_path / "server.log") as server,
        httpx.Client(base_url=server.base_url, timeout=60) as client,
    ):
        account = {"email": "big@example.com", "password": "long enough password"}
        client.post("/api/v1/auth/register", json=account)
        token = client.post("/api/v1/auth/login", json=account).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        dataset = {
            "name": "t",
            "fields": [
                {"name": "id", "type": "integer", "primary_key": True},
                {"name": "title", "type": "string"},
            ],
        }
        assert client.post("/api/v1/schemas", json=dataset).status_code == 201
        csv = {"Content-Type": "text/csv"}
        declared = client.post("/api/v1/schemas/t/rows", content=body, headers=csv)
        chunked = client.post(
            "/api/v1/schemas/t/rows",
            content=(body[i : i + 65536] for i in range(0, len(body), 65536)),
            headers=csv,
        )
        rows = client.get("/api/v1/schemas/t").json()["row_count"]
    assert declared.status_code == 413
    assert chunked.status_code == 413
    assert chunked.json()["code"] == "payload_too_large"
    assert rows == 0
