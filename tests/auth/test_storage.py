"""The database holds no secret in a form that could be used: scan every table."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import inspect, text

from tablehouse.config import Settings
from tablehouse.core.database import create_engine
from tests.support.accounts import PASSWORD, bearer, login, mailed_tokens_in, register, signed_up


async def _every_value(settings: Settings) -> str:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
            values: list[Any] = []
            for table in tables:
                rows = await connection.execute(text(f'SELECT * FROM "{table}"'))
                values.extend(value for row in rows for value in row)
    finally:
        await engine.dispose()
    return "\n".join(
        value.decode("latin-1") if isinstance(value, bytes) else str(value) for value in values
    )


async def test_no_plaintext_password_token_or_key_is_stored(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client, "secretive@example.com")
    pair = await login(client, "secretive@example.com")
    rotated = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).json()
    key = (
        await client.post(
            "/api/v1/auth/api-keys",
            json={"name": "ci", "scopes": ["read"]},
            headers=bearer(rotated["access_token"]),
        )
    ).json()["key"]
    await client.post(
        "/api/v1/auth/password-reset/request", json={"email": "secretive@example.com"}
    )
    mailed_tokens = mailed_tokens_in(settings)
    assert len(mailed_tokens) == 2  # verification and password reset

    stored = await _every_value(settings)
    secrets = [
        PASSWORD,
        pair["access_token"],
        pair["refresh_token"],
        rotated["access_token"],
        rotated["refresh_token"],
        key,
        key.split("_", 2)[2],
        *mailed_tokens,
    ]
    leaked = [secret[:12] + "..." for secret in secrets if secret in stored]
    assert leaked == []
    assert "$argon2id$" in stored, "the scan did read the users table"


async def test_a_second_user_is_scanned_too(client: httpx.AsyncClient, settings: Settings) -> None:
    pair = await signed_up(client, "another@example.com")
    stored = await _every_value(settings)
    assert pair["refresh_token"] not in stored
    assert "another@example.com" in stored
