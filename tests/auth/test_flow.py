"""The account lifecycle over HTTP: register, log in, use, refresh, log out."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tablehouse.api.runtime import Runtime
from tablehouse.auth.models import User
from tablehouse.core.security.passwords import Passwords
from tests.support.accounts import PASSWORD, bearer, login, register, signed_up

API = "/api/v1"


async def test_register_login_me_refresh_logout(client: httpx.AsyncClient) -> None:
    user = await register(client, "Ada@Example.com", full_name="Ada Lovelace")
    assert user["email"] == "ada@example.com"
    assert user["role"] == "user"
    assert user["is_verified"] is False
    assert "password_hash" not in user

    pair = await login(client, "ada@EXAMPLE.com")
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 15 * 60
    me = await client.get(f"{API}/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.json()["full_name"] == "Ada Lovelace"

    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 200
    new_pair = refreshed.json()
    assert new_pair["refresh_token"] != pair["refresh_token"]
    assert new_pair["access_token"] != pair["access_token"]
    # The replaced access token stops working as soon as it is replaced.
    old_access = await client.get(f"{API}/users/me", headers=bearer(pair["access_token"]))
    assert old_access.status_code == 401

    logout = await client.post(f"{API}/auth/logout", headers=bearer(new_pair["access_token"]))
    assert logout.status_code == 204
    after = await client.get(f"{API}/users/me", headers=bearer(new_pair["access_token"]))
    assert after.status_code == 401
    assert after.json()["code"] == "session_revoked"
    assert after.headers["WWW-Authenticate"] == "Bearer"
    again = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": new_pair["refresh_token"]}
    )
    assert again.status_code == 401


async def test_duplicate_email_is_409_whatever_its_case(client: httpx.AsyncClient) -> None:
    await register(client, "grace@example.com")
    response = await client.post(
        f"{API}/auth/register", json={"email": "GRACE@example.com", "password": PASSWORD}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "password_too_short"),
        ("x" * 129, "password_too_long"),
        ("Linus@Example.com", "password_is_email"),
    ],
)
async def test_password_policy_names_the_field(
    client: httpx.AsyncClient, password: str, problem: str
) -> None:
    response = await client.post(
        f"{API}/auth/register", json={"email": "linus@example.com", "password": password}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"][0]["loc"] == ["body", "password"]
    assert body["detail"][0]["type"] == problem


async def test_invalid_email_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/register", json={"email": "not-an-email", "password": PASSWORD}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "email"]


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "barbara@example.com")
    wrong_password = await client.post(
        f"{API}/auth/login", json={"email": "barbara@example.com", "password": "not the one!"}
    )
    unknown_email = await client.post(
        f"{API}/auth/login", json={"email": "nobody@example.com", "password": "not the one!"}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.headers["WWW-Authenticate"] == "Bearer"


async def test_oauth2_form_login_serves_the_docs_authorize_button(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "form@example.com")
    response = await client.post(
        f"{API}/auth/token", data={"username": "form@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"
    schema = (await client.get("/openapi.json")).json()
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == f"{API}/auth/token"


async def test_missing_token_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/users/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["code"] == "not_authenticated"


async def test_logout_all_ends_every_session(client: httpx.AsyncClient) -> None:
    first = await signed_up(client, "edsger@example.com")
    second = await login(client, "edsger@example.com")
    response = await client.post(f"{API}/auth/logout-all", headers=bearer(second["access_token"]))
    assert response.status_code == 204
    for pair in (first, second):
        me = await client.get(f"{API}/users/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 401


async def test_sessions_are_listed_and_one_can_be_revoked(client: httpx.AsyncClient) -> None:
    first = await signed_up(client, "alan@example.com")
    second = await login(client, "alan@example.com")
    listed = await client.get(
        f"{API}/auth/sessions", headers={**bearer(second["access_token"]), "User-Agent": "probe"}
    )
    assert listed.status_code == 200
    rows = listed.json()
    assert len(rows) == 2
    assert [row["current"] for row in rows].count(True) == 1
    assert all("hash" not in key for row in rows for key in row)
    other = next(row for row in rows if not row["current"])
    revoked = await client.delete(
        f"{API}/auth/sessions/{other['id']}", headers=bearer(second["access_token"])
    )
    assert revoked.status_code == 204
    me = await client.get(f"{API}/users/me", headers=bearer(first["access_token"]))
    assert me.status_code == 401
    again = await client.delete(
        f"{API}/auth/sessions/{other['id']}", headers=bearer(second["access_token"])
    )
    assert again.status_code == 404


async def test_another_users_session_is_not_found(client: httpx.AsyncClient) -> None:
    mine = await signed_up(client, "mine@example.com")
    theirs = await signed_up(client, "theirs@example.com")
    their_sessions = await client.get(
        f"{API}/auth/sessions", headers=bearer(theirs["access_token"])
    )
    their_id = their_sessions.json()[0]["id"]
    response = await client.delete(
        f"{API}/auth/sessions/{their_id}", headers=bearer(mine["access_token"])
    )
    assert response.status_code == 404
    still = await client.get(f"{API}/users/me", headers=bearer(theirs["access_token"]))
    assert still.status_code == 200


async def test_password_change_needs_the_current_one_and_ends_other_sessions(
    client: httpx.AsyncClient,
) -> None:
    other = await signed_up(client, "hopper@example.com")
    current = await login(client, "hopper@example.com")
    headers = bearer(current["access_token"])

    missing = await client.patch(
        f"{API}/users/me", json={"password": "a new password"}, headers=headers
    )
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "current_password"]
    wrong = await client.patch(
        f"{API}/users/me",
        json={"password": "a new password", "current_password": "wrong password"},
        headers=headers,
    )
    assert wrong.status_code == 422

    changed = await client.patch(
        f"{API}/users/me",
        json={"password": "a new password", "current_password": PASSWORD, "full_name": "G. Hopper"},
        headers=headers,
    )
    assert changed.status_code == 200
    assert changed.json()["full_name"] == "G. Hopper"
    assert (await client.get(f"{API}/users/me", headers=headers)).status_code == 200
    other_me = await client.get(f"{API}/users/me", headers=bearer(other["access_token"]))
    assert other_me.status_code == 401
    old = await client.post(
        f"{API}/auth/login", json={"email": "hopper@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    await login(client, "hopper@example.com", "a new password")


async def test_login_rehashes_a_password_stored_with_old_parameters(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Stronger hashing settings apply to existing users at their next login."""
    await register(client, "knuth@example.com")
    runtime: Runtime = app.state.runtime
    stronger = runtime.settings.model_copy(update={"password_hash_time_cost": 2})
    app.state.runtime = dataclasses.replace(runtime, passwords=Passwords(stronger))
    await login(client, "knuth@example.com")
    async with runtime.session_factory() as session:
        stored = await session.scalar(
            select(User.password_hash).where(User.email == "knuth@example.com")
        )
    assert stored is not None
    assert ",t=2," in stored
    await login(client, "knuth@example.com")
