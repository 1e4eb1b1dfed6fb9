"""Failed logins are throttled per account and per client address."""

from __future__ import annotations

import httpx

from tablehouse.config import Settings
from tests.accounts import PASSWORD, login, register

LOGIN = "/api/v1/auth/login"


async def _attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def test_twenty_wrong_passwords_are_throttled_with_retry_after(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "target@example.com")
    statuses = [
        (await _attempt(client, "target@example.com", f"guess {n:04}")).status_code
        for n in range(20)
    ]
    limit = settings.login_max_failures_per_account
    assert statuses[:limit] == [401] * limit
    assert statuses[limit:] == [429] * (20 - limit)

    throttled = await _attempt(client, "target@example.com", PASSWORD)
    assert throttled.status_code == 429, "the right password is refused while throttled"
    assert throttled.json()["code"] == "login_throttled"
    retry_after = int(throttled.headers["Retry-After"])
    assert 0 < retry_after <= settings.login_failure_window_seconds


async def test_other_accounts_are_unaffected(client: httpx.AsyncClient) -> None:
    await register(client, "target@example.com")
    await register(client, "bystander@example.com")
    for n in range(12):
        await _attempt(client, "target@example.com", f"guess {n:04}")
    assert (await _attempt(client, "target@example.com", PASSWORD)).status_code == 429
    await login(client, "bystander@example.com")


async def test_a_successful_login_clears_the_account_count(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "forgetful@example.com")
    limit = settings.login_max_failures_per_account
    for n in range(limit - 1):
        await _attempt(client, "forgetful@example.com", f"guess {n:04}")
    await login(client, "forgetful@example.com")
    for n in range(limit - 1):
        response = await _attempt(client, "forgetful@example.com", f"again {n:04}")
        assert response.status_code == 401
    await login(client, "forgetful@example.com")


async def test_unknown_accounts_are_throttled_too(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Otherwise the throttle itself would tell which emails have accounts."""
    limit = settings.login_max_failures_per_account
    statuses = [
        (await _attempt(client, "ghost@example.com", f"guess {n:04}")).status_code
        for n in range(limit + 1)
    ]
    assert statuses[-1] == 429


async def test_one_address_spraying_many_accounts_is_throttled(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "real@example.com")
    per_address = settings.login_max_failures_per_address
    for n in range(per_address):
        response = await _attempt(client, f"user{n}@example.com", "password spray")
        assert response.status_code == 401
    blocked = await _attempt(client, "real@example.com", PASSWORD)
    assert blocked.status_code == 429
