"""``tablehouse users throttled`` and ``users unlock``, run as real processes on both backends."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tablehouse.app import create_app
from tests.support.accounts import PASSWORD, register
from tests.support.databases import settings_for
from tests.support.processes import run_tablehouse
from tests.support.serving import started

pytestmark = pytest.mark.slow

LOGIN = "/api/v1/auth/login"
PER_ACCOUNT = 3
PER_ADDRESS = 5


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """What the CLI and the server both read: one database, the same limits."""
    return {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "ANALYTICS_ENABLED": "false",
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": str(PER_ACCOUNT),
        "LOGIN_MAX_FAILURES_PER_ADDRESS": str(PER_ADDRESS),
        "LOGIN_ADDRESS_BACKOFF_SECONDS": "600",
    }


@pytest.fixture
async def http(env: dict[str, str], tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(
        env["DATABASE_URL"],
        tmp_path / "data",
        login_max_failures_per_account=PER_ACCOUNT,
        login_max_failures_per_address=PER_ADDRESS,
        login_address_backoff_seconds=600,
    )
    app = create_app(settings)
    async with started(app) as client:
        yield client


def tablehouse(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = run_tablehouse(*args, env={"COLUMNS": "200", **env})
    assert "Traceback" not in result.stderr
    return result


async def _attempt(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post(LOGIN, json={"email": email, "password": password})


async def _fail_from_this_address(http: httpx.AsyncClient, emails: list[str]) -> None:
    for email in emails:
        assert (await _attempt(http, email, "wrong password")).status_code == 401


async def test_unlock_address_lets_an_account_that_failed_from_it_log_in_again(
    http: httpx.AsyncClient, env: dict[str, str]
) -> None:
    await register(http, "dev@example.com")
    others = [f"fuzz{n}@example.com" for n in range(PER_ADDRESS - 1)]
    await _fail_from_this_address(http, ["dev@example.com", *others])
    assert (await _attempt(http, "dev@example.com", PASSWORD)).json()["limit"] == "address"

    listed = tablehouse("users", "throttled", env=env)
    unlocked = tablehouse("users", "unlock", "--address", "127.0.0.1", env=env)

    assert listed.returncode == 0, listed.stderr
    address_line = next(line for line in listed.stdout.splitlines() if "127.0.0.1" in line)
    assert "address" in address_line
    assert f"{PER_ADDRESS} of {PER_ADDRESS}" in address_line
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout == f"forgot {PER_ADDRESS} failed logins from 127.0.0.1\n"
    assert (await _attempt(http, "dev@example.com", PASSWORD)).status_code == 200


async def test_unlock_email_lifts_the_account_limit(
    http: httpx.AsyncClient, env: dict[str, str]
) -> None:
    await register(http, "target@example.com")
    await _fail_from_this_address(http, ["target@example.com"] * PER_ACCOUNT)
    assert (await _attempt(http, "target@example.com", PASSWORD)).json()["limit"] == "account"

    unlocked = tablehouse("users", "unlock", "Target@Example.com", env=env)

    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout == f"forgot {PER_ACCOUNT} failed logins of target@example.com\n"
    assert (await _attempt(http, "target@example.com", PASSWORD)).status_code == 200


async def test_unlock_email_also_lifts_its_refusal_at_a_throttled_address(
    http: httpx.AsyncClient, env: dict[str, str]
) -> None:
    await register(http, "dev@example.com")
    others = [f"fuzz{n}@example.com" for n in range(PER_ADDRESS - 1)]
    await _fail_from_this_address(http, ["dev@example.com", *others])

    unlocked = tablehouse("users", "unlock", "dev@example.com", env=env)

    assert unlocked.stdout == "forgot 1 failed login of dev@example.com\n"
    # The address is still at its limit, but dev@ has no failure from it any more.
    assert (await _attempt(http, "fuzz0@example.com", "wrong password")).status_code == 429
    assert (await _attempt(http, "dev@example.com", PASSWORD)).status_code == 200


def test_unlock_without_an_email_or_address_says_what_to_give(env: dict[str, str]) -> None:
    result = tablehouse("users", "unlock", env=env)

    assert result.returncode == 1
    assert "give an email, --address, or both" in result.stderr
