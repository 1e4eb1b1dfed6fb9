"""Failed logins are throttled per account and per client address."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tablehouse.auth.credentials import throttle
from tablehouse.auth.schemas import LoginThrottledBody
from tablehouse.cli.common import in_unit_of_work
from tablehouse.config import Settings
from tablehouse.core.database import WriteSession
from tablehouse.core.models import utc_now
from tests.support.accounts import PASSWORD, login, register
from tests.support.databases import settings_for

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # A back-off long enough that no test runs into its end, however slow the machine.
    return settings_for(database_url, tmp_path / "data", login_address_backoff_seconds=600)


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


async def _spray(client: httpx.AsyncClient, emails: list[str]) -> None:
    """One wrong password per email, as a credential-stuffing run (or a fuzz run) sends them."""
    for email in emails:
        response = await _attempt(client, email, "password spray")
        assert response.status_code == 401, response.text


async def test_the_429_says_the_account_limit_was_hit(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await _spray(client, ["target@example.com"] * settings.login_max_failures_per_account)

    throttled = await _attempt(client, "target@example.com", "one more guess")

    assert throttled.status_code == 429
    body = throttled.json()
    assert body["code"] == "login_throttled"
    assert body["limit"] == "account"
    assert body["retry_after"] == int(throttled.headers["Retry-After"])
    assert "this email address" in body["detail"]


async def test_a_correct_password_logs_in_from_an_address_throttled_by_other_accounts(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A fuzz run from 127.0.0.1 must not lock out the developer on the same laptop."""
    await register(client, "developer@example.com")
    await _spray(
        client, [f"fuzz{n}@example.com" for n in range(settings.login_max_failures_per_address)]
    )

    await login(client, "developer@example.com")


async def test_an_account_that_failed_from_a_throttled_address_is_refused_with_its_password(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "victim@example.com")
    per_address = settings.login_max_failures_per_address
    await _spray(
        client, ["victim@example.com"] + [f"user{n}@example.com" for n in range(per_address - 1)]
    )

    refused = await _attempt(client, "victim@example.com", PASSWORD)

    assert refused.status_code == 429, "the password is not even checked"
    body = refused.json()
    assert body["code"] == "login_throttled"
    assert body["limit"] == "address"
    assert "127.0.0.1" in body["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= settings.login_failure_window_seconds


async def test_spraying_past_the_address_limit_is_backed_off_for_every_new_account(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "real@example.com")
    await _spray(
        client, [f"user{n}@example.com" for n in range(settings.login_max_failures_per_address)]
    )
    # Past the limit, one password is checked; the next must wait the back-off.
    await _spray(client, ["one.more@example.com"])

    for email, password in (
        ("another@example.com", "password spray"),
        ("real@example.com", PASSWORD),
    ):
        refused = await _attempt(client, email, password)
        assert refused.status_code == 429
        assert refused.json()["limit"] == "address"
        # The whole back-off, less the moments this test took.
        backoff = settings.login_address_backoff_seconds
        assert backoff - 5 <= int(refused.headers["Retry-After"]) <= backoff


@pytest.mark.parametrize("length", [390, 1000])
async def test_a_long_username_in_the_password_form_is_counted_not_a_500(
    client: httpx.AsyncClient, length: int
) -> None:
    """The form's username has no length limit; the failure it causes must still be stored."""
    username = "a" * (length - len("@example.com")) + "@example.com"
    response = await client.post(
        "/api/v1/auth/token", data={"username": username, "password": "not the password"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_credentials"


async def test_the_openapi_429_of_both_logins_is_the_body_the_server_sends(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/api/v1/auth/login", "/api/v1/auth/token"):
        declared = spec["paths"][path]["post"]["responses"]["429"]
        assert declared["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/LoginThrottledBody"
        }
        assert "Retry-After" in declared["headers"]
    schema = spec["components"]["schemas"]["LoginThrottledBody"]
    assert schema["properties"]["limit"]["enum"] == ["account", "address"]

    await _spray(client, ["target@example.com"] * settings.login_max_failures_per_account)
    throttled = await client.post(
        "/api/v1/auth/token", data={"username": "target@example.com", "password": PASSWORD}
    )
    assert throttled.status_code == 429
    assert set(throttled.json()) == set(schema["required"])
    LoginThrottledBody.model_validate(throttled.json())


async def test_the_address_back_off_doubles_with_each_failure_past_the_limit(
    settings: Settings,
) -> None:
    """Times are given, not waited for: the rule is a function of the stored failures."""
    settings = settings.model_copy(update={"login_address_backoff_seconds": 4})
    address, start = "203.0.113.9", utc_now()

    async def allowed(session: WriteSession, email: str, after_seconds: int) -> str:
        try:
            await throttle.ensure_allowed(
                session,
                settings,
                email=email,
                address=address,
                now=start + timedelta(seconds=after_seconds),
            )
        except throttle.LoginThrottled as refused:
            return f"{refused.limit}, retry after {refused.retry_after_seconds} s"
        return "checked"

    async def work(session: WriteSession) -> list[str]:
        past_limit = settings.login_max_failures_per_address + 2
        for n in range(past_limit):
            await throttle.record_failure(
                session, settings, email=f"user{n}@example.com", address=address, now=start
            )
        # Two failures past the limit: the next check waits 4 s doubled once.
        return [
            await allowed(session, "fresh@example.com", 5),
            await allowed(session, "fresh@example.com", 8),
            await allowed(session, "user0@example.com", 8),
        ]

    assert await in_unit_of_work(settings, work) == [
        "address, retry after 3 s",
        "checked",
        f"address, retry after {settings.login_failure_window_seconds - 8} s",
    ]
