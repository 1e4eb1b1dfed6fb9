"""API keys: shown once, stored hashed, revocable, expiring, scoped, and never a login session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import select, update

from tablehouse.auth.dependencies import ReadAccess, WriteAccess
from tablehouse.auth.models import ApiKey, User
from tablehouse.config import Settings
from tablehouse.core.database import create_engine
from tablehouse.core.security.tokens import hash_token
from tests.support.accounts import PASSWORD, bearer, login, signed_up

KEYS = "/api/v1/auth/api-keys"
ME = "/api/v1/users/me"

scoped = APIRouter(prefix="/_test_scopes")


@scoped.get("/read")
async def read_something(caller: ReadAccess) -> dict[str, str]:
    return {"email": caller.user.email}


@scoped.post("/write")
async def write_something(caller: WriteAccess) -> dict[str, str]:
    return {"email": caller.user.email}


@pytest.fixture
async def scoped_client(app: FastAPI, client: httpx.AsyncClient) -> httpx.AsyncClient:
    app.include_router(scoped)
    return client


async def create_key(client: httpx.AsyncClient, access_token: str, **body: Any) -> dict[str, Any]:
    payload = {"name": "ci", "scopes": ["read", "write"], **body}
    response = await client.post(KEYS, json=payload, headers=bearer(access_token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def set_column(
    settings: Settings, model: type[ApiKey | User], row_id: str, **values: Any
) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(model).where(model.id == uuid.UUID(row_id)).values(**values)
            )
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class StoredKey:
    id: str
    key: str
    user_id: str


async def stored_key(
    client: httpx.AsyncClient,
    access_token: str,
    *,
    scopes: tuple[str, ...] = ("read", "write"),
    expires_at: datetime | None = None,
) -> StoredKey:
    """A key made through the API, with its id and its owner's id."""
    me = await client.get(ME, headers=bearer(access_token))
    assert me.status_code == 200, me.text
    body: dict[str, Any] = {"scopes": list(scopes)}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    created = await create_key(client, access_token, **body)
    return StoredKey(id=created["id"], key=created["key"], user_id=me.json()["id"])


async def test_created_key_is_shown_once_and_authenticates(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "ada@example.com")
    created = await create_key(client, tokens["access_token"])

    key = created["key"]
    assert key.startswith(f"th_{created['prefix']}_")
    me = await client.get(ME, headers=bearer(key))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "ada@example.com"

    listed = await client.get(KEYS, headers=bearer(tokens["access_token"]))
    assert listed.status_code == 200
    [item] = listed.json()
    assert item["id"] == created["id"]
    assert item["prefix"] == created["prefix"]
    assert "key" not in item
    assert key not in listed.text
    assert hash_token(key) not in listed.text


async def test_database_holds_only_the_hash_of_a_key(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tokens = await signed_up(client, "ada@example.com")
    key = (await create_key(client, tokens["access_token"]))["key"]

    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(ApiKey.__table__))).all()
    finally:
        await engine.dispose()
    [row] = rows
    assert row.key_hash == hash_token(key)
    assert all(key not in str(value) for value in row)


async def test_key_in_the_past_is_refused(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "ada@example.com")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    response = await client.post(
        KEYS,
        json={"name": "old", "scopes": ["read"], "expires_at": past},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 422
    assert [item["loc"] for item in response.json()["detail"]] == [["body", "expires_at"]]


async def test_expiry_without_an_offset_is_422_asking_for_one(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "ada@example.com")
    response = await client.post(
        KEYS,
        json={"name": "naive", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00"},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "expires_at"]
    assert problem["type"] == "timezone_aware"
    assert "offset" in problem["msg"]
    assert "Z" in problem["msg"]


@pytest.mark.parametrize(
    ("expires_at", "status"),
    [
        ("9999-12-31T23:00:00-05:00", 422),  # past the last instant a database can hold
        ("9999-12-31T23:59:59+00:00", 201),
        ("9999-12-31T23:00:00+05:00", 201),
        ("0001-01-01T01:00:00+05:00", 422),  # before year 1 in UTC, and in the past
    ],
)
async def test_expiry_at_the_ends_of_the_range_is_stored_or_refused(
    client: httpx.AsyncClient, expires_at: str, status: int
) -> None:
    tokens = await signed_up(client, "ada@example.com")
    response = await client.post(
        KEYS,
        json={"name": "far", "scopes": ["read"], "expires_at": expires_at},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == status, response.text
    if status == 422:
        assert [item["loc"] for item in response.json()["detail"]] == [["body", "expires_at"]]
        return
    listed = await client.get(KEYS, headers=bearer(tokens["access_token"]))
    (item,) = listed.json()
    assert datetime.fromisoformat(item["expires_at"]) == datetime.fromisoformat(expires_at)


async def test_revoked_key_is_rejected(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "ada@example.com")
    stored = await stored_key(client, tokens["access_token"])
    assert (await client.get(ME, headers=bearer(stored.key))).status_code == 200

    revoked = await client.delete(f"{KEYS}/{stored.id}", headers=bearer(tokens["access_token"]))
    assert revoked.status_code == 204

    response = await client.get(ME, headers=bearer(stored.key))
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_revoked"
    [item] = (await client.get(KEYS, headers=bearer(tokens["access_token"]))).json()
    assert item["id"] == stored.id
    assert item["revoked_at"] is not None


async def test_expired_key_is_rejected(client: httpx.AsyncClient, settings: Settings) -> None:
    tokens = await signed_up(client, "ada@example.com")
    soon = datetime.now(UTC) + timedelta(hours=1)
    stored = await stored_key(client, tokens["access_token"], expires_at=soon)
    assert (await client.get(ME, headers=bearer(stored.key))).status_code == 200

    await set_column(
        settings, ApiKey, stored.id, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )

    response = await client.get(ME, headers=bearer(stored.key))
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_expired"


async def test_tampered_secret_is_rejected(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "ada@example.com")
    stored = await stored_key(client, tokens["access_token"])
    marker, prefix, secret = stored.key.split("_", 2)
    changed = ("B" if secret[0] == "A" else "A") + secret[1:]

    response = await client.get(ME, headers=bearer(f"{marker}_{prefix}_{changed}"))

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await client.get(ME, headers=bearer(stored.key))).status_code == 200


async def test_unknown_prefix_is_rejected(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "ada@example.com")
    stored = await stored_key(client, tokens["access_token"])
    secret = stored.key.split("_", 2)[2]

    # '1' is not in the base32 alphabet, so no real key can have this prefix.
    response = await client.get(ME, headers=bearer(f"th_unknown1_{secret}"))

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", KEYS, {"name": "another", "scopes": ["read"]}),
        ("GET", KEYS, None),
        ("GET", "/api/v1/auth/sessions", None),
        ("POST", "/api/v1/auth/logout-all", None),
        ("PATCH", ME, {"password": "a brand new secret", "current_password": PASSWORD}),
    ],
)
async def test_api_key_cannot_manage_keys_sessions_or_password(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    tokens = await signed_up(client, "ada@example.com")
    stored = await stored_key(client, tokens["access_token"])

    response = await client.request(method, path, json=body, headers=bearer(stored.key))

    assert response.status_code == 403
    assert response.json()["code"] == "session_required"
    # Nothing was done on the key's behalf: the session works, still one key, same password.
    listed = await client.get(KEYS, headers=bearer(tokens["access_token"]))
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()] == [stored.id]
    await login(client, "ada@example.com", PASSWORD)


async def test_another_user_cannot_revoke_my_key(client: httpx.AsyncClient) -> None:
    mine = await signed_up(client, "ada@example.com")
    theirs = await signed_up(client, "bob@example.com")
    stored = await stored_key(client, mine["access_token"])

    response = await client.delete(f"{KEYS}/{stored.id}", headers=bearer(theirs["access_token"]))

    assert response.status_code == 404
    assert response.json()["code"] == "api_key_not_found"
    assert (await client.get(ME, headers=bearer(stored.key))).status_code == 200
    assert (await client.get(KEYS, headers=bearer(theirs["access_token"]))).json() == []


async def test_read_only_key_may_read_but_not_write(scoped_client: httpx.AsyncClient) -> None:
    tokens = await signed_up(scoped_client, "ada@example.com")
    stored = await stored_key(scoped_client, tokens["access_token"], scopes=("read",))

    read = await scoped_client.get("/_test_scopes/read", headers=bearer(stored.key))
    write = await scoped_client.post("/_test_scopes/write", headers=bearer(stored.key))

    assert read.status_code == 200
    assert read.json() == {"email": "ada@example.com"}
    assert write.status_code == 403
    assert write.json()["code"] == "scope_required"


async def test_write_only_key_may_not_read(scoped_client: httpx.AsyncClient) -> None:
    tokens = await signed_up(scoped_client, "ada@example.com")
    stored = await stored_key(scoped_client, tokens["access_token"], scopes=("write",))

    write = await scoped_client.post("/_test_scopes/write", headers=bearer(stored.key))
    read = await scoped_client.get("/_test_scopes/read", headers=bearer(stored.key))

    assert write.status_code == 200
    assert read.status_code == 403
    assert read.json()["code"] == "scope_required"


async def test_login_session_has_every_scope(scoped_client: httpx.AsyncClient) -> None:
    tokens = await signed_up(scoped_client, "ada@example.com")
    headers = bearer(tokens["access_token"])

    assert (await scoped_client.get("/_test_scopes/read", headers=headers)).status_code == 200
    assert (await scoped_client.post("/_test_scopes/write", headers=headers)).status_code == 200


async def test_scoped_route_without_credentials_is_401(scoped_client: httpx.AsyncClient) -> None:
    response = await scoped_client.get("/_test_scopes/read")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_key_of_a_deactivated_owner_stops_working(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tokens = await signed_up(client, "ada@example.com")
    stored = await stored_key(client, tokens["access_token"])
    assert (await client.get(ME, headers=bearer(stored.key))).status_code == 200

    await set_column(settings, User, stored.user_id, is_active=False)

    response = await client.get(ME, headers=bearer(stored.key))
    assert response.status_code == 403
    assert response.json()["code"] == "account_inactive"
