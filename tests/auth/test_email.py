"""Email verification and password reset: mailed, single-use, expiring tokens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import update
from structlog.testing import capture_logs

from tablehouse.app import create_app
from tablehouse.auth.models import OneTimeToken, TokenPurpose
from tablehouse.config import Settings
from tablehouse.core.database import create_engine
from tests.support.accounts import PASSWORD, bearer, login, mailed_tokens_in, register, signed_up
from tests.support.databases import settings_for
from tests.support.processes import free_port
from tests.support.serving import started

AUTH = "/api/v1/auth"
NEW_PASSWORD = "a different long secret"
TOKEN = re.compile(r"^([A-Za-z0-9_-]{43})\r?$", re.MULTILINE)


def outbox(settings: Settings) -> list[EmailMessage]:
    messages = []
    for path in sorted((settings.resolved_data_dir / "outbox").glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


async def expire_tokens(settings: Settings, purpose: TokenPurpose) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(OneTimeToken)
                .where(OneTimeToken.purpose == purpose)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()


async def reset_token(client: httpx.AsyncClient, settings: Settings, email: str) -> str:
    response = await client.post(f"{AUTH}/password-reset/request", json={"email": email})
    assert response.status_code == 202
    [message] = [m for m in outbox(settings) if m["Subject"] == "Reset your Tablehouse password"]
    assert message["To"] == email
    [token] = TOKEN.findall(message.get_content())
    return str(token)


async def test_registration_mails_a_verification_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "ada@example.com")

    [message] = outbox(settings)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Confirm your Tablehouse email address"
    [token] = TOKEN.findall(message.get_content())
    assert token in message.get_content().split("verify/confirm:", 1)[1]


async def test_verification_token_verifies_the_address_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tokens = await signed_up(client, "ada@example.com")
    [token] = mailed_tokens_in(settings)

    confirmed = await client.post(f"{AUTH}/verify/confirm", json={"token": token})
    again = await client.post(f"{AUTH}/verify/confirm", json={"token": token})

    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["email"] == "ada@example.com"
    assert confirmed.json()["is_verified"] is True
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["is_verified"] is True
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"


@pytest.mark.parametrize("path", ["verify/confirm", "password-reset/confirm"])
async def test_garbage_token_is_400(client: httpx.AsyncClient, path: str) -> None:
    await register(client, "ada@example.com")
    body = {"token": "not-a-token-we-ever-sent", "new_password": NEW_PASSWORD}

    response = await client.post(f"{AUTH}/{path}", json=body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"


@pytest.mark.parametrize("path", ["verify/request", "password-reset/request"])
async def test_request_answers_alike_whether_or_not_the_email_is_known(
    client: httpx.AsyncClient, settings: Settings, path: str
) -> None:
    await register(client, "ada@example.com")
    mailed_before = len(outbox(settings))

    unknown = await client.post(f"{AUTH}/{path}", json={"email": "nobody@example.com"})
    assert len(outbox(settings)) == mailed_before
    known = await client.post(f"{AUTH}/{path}", json={"email": "ADA@example.com"})

    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    assert len(outbox(settings)) == mailed_before + 1
    assert outbox(settings)[-1]["To"] == "ada@example.com"


async def test_verified_account_is_sent_no_new_verification(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "ada@example.com")
    [token] = mailed_tokens_in(settings)
    assert (await client.post(f"{AUTH}/verify/confirm", json={"token": token})).status_code == 200

    response = await client.post(f"{AUTH}/verify/request", json={"email": "ada@example.com"})

    assert response.status_code == 202
    assert len(outbox(settings)) == 1


async def test_password_reset_replaces_the_password_and_ends_every_session(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tokens = await signed_up(client, "ada@example.com")
    token = await reset_token(client, settings, "ada@example.com")

    confirmed = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )

    assert confirmed.status_code == 204
    old = await client.post(
        f"{AUTH}/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    assert (
        await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 401
    refreshed = await client.post(
        f"{AUTH}/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    await login(client, "ada@example.com", NEW_PASSWORD)
    again = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": token, "new_password": "yet another one!"}
    )
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"
    await login(client, "ada@example.com", NEW_PASSWORD)


async def test_too_short_new_password_is_422_and_keeps_the_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "ada@example.com")
    token = await reset_token(client, settings, "ada@example.com")

    short = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": token, "new_password": "short"}
    )

    assert short.status_code == 422
    assert [item["loc"] for item in short.json()["detail"]] == [["body", "new_password"]]
    await login(client, "ada@example.com", PASSWORD)
    retried = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert retried.status_code == 204
    await login(client, "ada@example.com", NEW_PASSWORD)


async def test_tokens_only_serve_their_own_purpose(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "ada@example.com")
    [verification] = mailed_tokens_in(settings)
    reset = await reset_token(client, settings, "ada@example.com")

    as_reset = await client.post(
        f"{AUTH}/password-reset/confirm",
        json={"token": verification, "new_password": NEW_PASSWORD},
    )
    as_verification = await client.post(f"{AUTH}/verify/confirm", json={"token": reset})

    assert as_reset.status_code == as_verification.status_code == 400
    await login(client, "ada@example.com", PASSWORD)
    # Neither was used up by the wrong door.
    assert (await client.post(f"{AUTH}/verify/confirm", json={"token": verification})).is_success
    reset_body = {"token": reset, "new_password": NEW_PASSWORD}
    assert (await client.post(f"{AUTH}/password-reset/confirm", json=reset_body)).is_success


@pytest.mark.parametrize(
    ("purpose", "path"),
    [
        (TokenPurpose.VERIFY_EMAIL, "verify/confirm"),
        (TokenPurpose.RESET_PASSWORD, "password-reset/confirm"),
    ],
)
async def test_expired_token_is_400(
    client: httpx.AsyncClient, settings: Settings, purpose: TokenPurpose, path: str
) -> None:
    await register(client, "ada@example.com")
    await client.post(f"{AUTH}/password-reset/request", json={"email": "ada@example.com"})
    verification, reset = mailed_tokens_in(settings)
    token = verification if purpose == TokenPurpose.VERIFY_EMAIL else reset

    await expire_tokens(settings, purpose)
    response = await client.post(
        f"{AUTH}/{path}", json={"token": token, "new_password": NEW_PASSWORD}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"
    # Nothing changed: the old password still works and the address is still unverified.
    tokens = await login(client, "ada@example.com", PASSWORD)
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["is_verified"] is False


class Inbox:
    """An aiosmtpd handler keeping what it is sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@asynccontextmanager
async def smtp_app(
    database_url: str, data_dir: Path, port: int
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with mail going to SMTP on 127.0.0.1:``port``, lifespan running."""
    settings = settings_for(
        database_url, data_dir, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"
    )
    app = create_app(settings)
    async with started(app) as http:
        yield http


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[int, Inbox]]:
    port = free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="localhost")
    controller.start()
    yield port, inbox
    controller.stop()


async def test_verification_mail_goes_through_a_real_smtp_server(
    database_url: str, tmp_path: Path, smtp_inbox: tuple[int, Inbox]
) -> None:
    port, inbox = smtp_inbox
    async with smtp_app(database_url, tmp_path / "smtp-data", port) as http:
        await register(http, "ada@example.com")

        [(recipients, message)] = inbox.messages
        assert recipients == ["ada@example.com"]
        assert message["Subject"] == "Confirm your Tablehouse email address"
        [token] = TOKEN.findall(message.get_content())
        confirmed = await http.post(f"{AUTH}/verify/confirm", json={"token": token})
        assert confirmed.status_code == 200
        assert confirmed.json()["is_verified"] is True
    assert not (tmp_path / "smtp-data" / "outbox").exists()


async def test_unreachable_smtp_server_does_not_fail_the_registration(
    database_url: str, tmp_path: Path
) -> None:
    async with smtp_app(database_url, tmp_path / "smtp-data", free_port()) as http:
        with capture_logs() as logs:
            await register(http, "ada@example.com")

        assert [entry["to"] for entry in logs if entry["event"] == "mail.failed"] == [
            "ada@example.com"
        ]
        await login(http, "ada@example.com", PASSWORD)


async def test_the_link_in_the_verification_mail_verifies_the_address(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "linked@example.com")
    [message] = outbox(settings)
    [link] = re.findall(r"^(http\S+)$", message.get_content(), flags=re.MULTILINE)
    assert link.startswith(f"{settings.public_url}/api/v1/auth/verify/confirm?token=")
    response = await client.get(link.removeprefix(settings.public_url))
    assert response.status_code == 200
    assert response.json()["is_verified"] is True
    assert (await client.get(link.removeprefix(settings.public_url))).status_code == 400
