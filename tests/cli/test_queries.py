"""``tablehouse query`` writes the query log, ``tablehouse queries`` reads it: real processes
on SQLite and an embedded store (chDB) of their own, with and without a server holding it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import initialised_database, run_tablehouse, running_server
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.slow
OWNER = "o@example.com"
PASSWORD = "long enough password"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A migrated database with one user, and analytics on (chDB under ``tmp_path``)."""
    return {**initialised_database(tmp_path, owner=OWNER), "ANALYTICS_ENABLED": "true"}


def _history(env: dict[str, str], *options: str) -> dict[str, Any]:
    listed = run_tablehouse("queries", "history", "--json", *options, env=env)
    assert listed.returncode == 0, listed.stderr
    page: dict[str, Any] = json.loads(listed.stdout)
    return page


def _user_lines(stderr: str) -> list[str]:
    """What a command printed for its user: stderr without the JSON log records."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def test_cli_queries_are_logged_with_source_cli_and_microseconds(env: dict[str, str]) -> None:
    answered = run_tablehouse("query", "SELECT 41 + 1 AS n", "--as", OWNER, env=env)
    refused = run_tablehouse("query", "DELETE FROM nothing", "--as", OWNER, env=env)

    page = _history(env)
    refusals = _history(env, "--status", "refused", "--text", "delete", "--source", "cli")
    from_the_api = _history(env, "--source", "api")

    assert answered.returncode == 0, answered.stderr
    assert refused.returncode == 1
    assert page["total"] == 2
    newest, oldest = page["items"]
    assert (newest["query_text"], newest["status"]) == ("DELETE FROM nothing", "refused")
    assert newest["error"].startswith("not_read_only")
    assert (oldest["query_text"], oldest["status"], oldest["rows_read"]) == (
        "SELECT 41 + 1 AS n",
        "ok",
        1,
    )
    assert {item["source"] for item in page["items"]} == {"cli"}
    # Not whole milliseconds: a query this small takes well under one.
    assert 0 < oldest["execution_time_ms"] < 1000
    assert oldest["execution_time_ms"] != int(oldest["execution_time_ms"])
    assert [item["query_text"] for item in refusals["items"]] == ["DELETE FROM nothing"]
    assert from_the_api["total"] == 0


def test_history_and_summary_print_tables_and_json(env: dict[str, str]) -> None:
    for n in range(3):
        assert run_tablehouse("query", f"SELECT {n}", "--as", OWNER, env=env).returncode == 0

    wide = {**env, "COLUMNS": "160"}  # no cell folded, so the test can read it
    table = run_tablehouse("queries", "history", "--user", OWNER, "--limit", "2", env=wide)
    summary = run_tablehouse("queries", "summary", "--interval", "day", "--json", env=env)
    printed = run_tablehouse("queries", "summary", "--since", "2h", env=env)
    nobody = run_tablehouse("queries", "history", "--user", "nobody@example.com", env=env)
    bad_since = run_tablehouse("queries", "summary", "--since", "yesterday", env=env)

    assert table.returncode == 0, table.stderr
    assert OWNER in table.stdout
    assert "SELECT 2" in table.stdout
    assert "SELECT 0" not in table.stdout  # the newest two only
    assert "2 of 3 queries" in table.stdout
    assert summary.returncode == 0, summary.stderr
    buckets = json.loads(summary.stdout)["buckets"]
    assert sum(bucket["count"] for bucket in buckets) == 3
    for bucket in buckets:
        assert bucket["execution_time_ms"]["p50"] > 0
    assert printed.returncode == 0, printed.stderr
    assert "p50 ms" in printed.stdout
    assert nobody.returncode == 1
    assert _user_lines(nobody.stderr) == ["error: --user: no user with email nobody@example.com"]
    assert bad_since.returncode == 1
    assert "expected ISO 8601" in bad_since.stderr


def _token(base_url: str) -> str:
    login = httpx.post(
        f"{base_url}/api/v1/auth/login", json={"email": OWNER, "password": PASSWORD}, timeout=30
    )
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


def _cli_queries_in_history(base_url: str, token: str, *, within: float) -> list[dict[str, Any]]:
    """GET /queries?source=cli until it lists one, asking every 0.2 s for ``within`` seconds."""

    def listed() -> list[dict[str, Any]]:
        answer = httpx.get(
            f"{base_url}/api/v1/queries",
            params={"source": "cli"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    return eventually_sync(listed, bool, within=within, poll=0.2)


def test_while_a_server_holds_the_store_cli_queries_reach_it_and_reads_say_what_to_do(
    env: dict[str, str], tmp_path: Path
) -> None:
    with running_server(env, tmp_path / "server.log") as server:
        token = _token(server.base_url)
        # The server opens the embedded store at its first use (here a read), not at start.
        opened = httpx.get(
            f"{server.base_url}/api/v1/queries",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert opened.status_code == 200, opened.text
        ran = run_tablehouse("query", "SELECT 'through the server' AS via", "--as", OWNER, env=env)
        logged = _cli_queries_in_history(server.base_url, token, within=30)
        status = run_tablehouse("analytics", "status", env=env)
        history = run_tablehouse("queries", "history", env=env)
        pid = server.process.pid

    assert ran.returncode == 0, ran.stderr
    assert "through the server" in ran.stdout
    assert _user_lines(ran.stderr)[1:] == []  # the figures' line, no warning
    assert [(item["query_text"], item["source"]) for item in logged] == [
        ("SELECT 'through the server' AS via", "cli")
    ]
    for result, instead in ((status, "GET /health/ready"), (history, "GET /api/v1/queries")):
        assert result.returncode == 1
        [line] = _user_lines(result.stderr)
        assert line.startswith("error: the embedded analytics store ")
        assert f"is open in process {pid}" in line
        assert instead in line
        assert "stop that process and run this again" in line
        assert "Traceback" not in result.stderr
        assert "Cannot lock file" not in result.stderr  # chDB's own line is never reached
