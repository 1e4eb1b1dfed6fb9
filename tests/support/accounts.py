"""Helpers for tests that need accounts: register, log in, promote, build headers."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import update

from tablehouse.auth.models import Role, User
from tablehouse.config import Settings
from tablehouse.core.database import create_engine

PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def signed_up(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    """Register and log in; the token pair."""
    await register(client, email)
    return await login(client, email)


def mailed_tokens_in(settings: Settings) -> list[str]:
    """The one-time tokens in the outbox's messages, oldest message first."""
    tokens = []
    for path in sorted((settings.resolved_data_dir / "outbox").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_content()
        # Every account mail carries its token on a line of its own.
        tokens.extend(re.findall(r"^([A-Za-z0-9_-]{43})\r?$", body, flags=re.MULTILINE))
    return tokens


async def promote_to_admin(settings: Settings, email: str) -> None:
    """Make an admin the way an operator would (straight in the database, or the CLI)."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(User).where(User.email == email).values(role=Role.ADMIN)
            )
    finally:
        await engine.dispose()
