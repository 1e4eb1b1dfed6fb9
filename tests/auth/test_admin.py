"""Administration of users: admins only, paginated and filtered, changes apply at once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tablehouse.auth.models import ApiKey, AuthSession, OneTimeToken
from tablehouse.config import Settings
from tablehouse.core.database import create_engine
from tests.support.accounts import PASSWORD, bearer, login, promote_to_admin, register, signed_up

USERS = "/api/v1/users"
ME = "/api/v1/users/me"
ADMIN = "root@example.com"


async def admin_headers(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    await register(client, ADMIN)
    await promote_to_admin(settings, ADMIN)
    return bearer((await login(client, ADMIN))["access_token"])


async def user_id(client: httpx.AsyncClient, access_token: str) -> str:
    response = await client.get(ME, headers=bearer(access_token))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get(USERS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("GET", "/{id}"), ("PATCH", "/{id}"), ("DELETE", "/{id}")],
)
async def test_non_admin_is_refused_on_admin_routes(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    other = await signed_up(client, "bob@example.com")
    tokens = await signed_up(client, "ada@example.com")
    url = USERS + path.format(id=await user_id(client, other["access_token"]))
    body = {"is_active": False} if method == "PATCH" else None

    response = await client.request(method, url, json=body, headers=bearer(tokens["access_token"]))

    assert response.status_code == 403
    assert response.json()["code"] == "admin_required"
    assert (await client.get(ME, headers=bearer(other["access_token"]))).status_code == 200


async def test_admin_lists_users_in_pages(client: httpx.AsyncClient, settings: Settings) -> None:
    headers = await admin_headers(client, settings)
    for number in range(4):
        await register(client, f"user{number}@example.com")

    first = await listed(client, headers, limit=2, offset=0)
    second = await listed(client, headers, limit=2, offset=2)
    last = await listed(client, headers, limit=2, offset=4)

    assert (first["total"], first["limit"], first["offset"]) == (5, 2, 0)
    assert (second["total"], second["offset"]) == (5, 2)
    assert [len(page["items"]) for page in (first, second, last)] == [2, 2, 1]
    emails = [item["email"] for page in (first, second, last) for item in page["items"]]
    assert sorted(emails) == sorted([ADMIN, *(f"user{n}@example.com" for n in range(4))])
    assert all("password_hash" not in item for item in first["items"])


@pytest.mark.parametrize("limit", [0, 201])
async def test_page_size_out_of_range_is_422(
    client: httpx.AsyncClient, settings: Settings, limit: int
) -> None:
    headers = await admin_headers(client, settings)
    response = await client.get(USERS, params={"limit": limit}, headers=headers)
    assert response.status_code == 422


async def test_admin_filters_by_email_part_role_and_activity(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    await register(client, "bob.smith@example.com")
    gone = await register(client, "carol@example.org")
    deactivated = await client.patch(
        f"{USERS}/{gone['id']}", json={"is_active": False}, headers=headers
    )
    assert deactivated.status_code == 200

    by_email = await listed(client, headers, email="SMITH")
    by_domain = await listed(client, headers, email="example.com")
    wildcard = await listed(client, headers, email="%")
    admins = await listed(client, headers, role="admin")
    inactive = await listed(client, headers, is_active="false")
    active_users = await listed(client, headers, role="user", is_active="true")

    assert [item["email"] for item in by_email["items"]] == ["bob.smith@example.com"]
    assert by_email["total"] == 1
    assert sorted(item["email"] for item in by_domain["items"]) == [
        "bob.smith@example.com",
        ADMIN,
    ]
    assert wildcard["total"] == 0
    assert [item["email"] for item in admins["items"]] == [ADMIN]
    assert [item["email"] for item in inactive["items"]] == ["carol@example.org"]
    assert [item["email"] for item in active_users["items"]] == ["bob.smith@example.com"]


async def test_admin_reads_and_changes_role_verification_and_activity(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    ada = await register(client, "ada@example.com")
    assert (ada["role"], ada["is_verified"], ada["is_active"]) == ("user", False, True)

    changed = await client.patch(
        f"{USERS}/{ada['id']}",
        json={"role": "admin", "is_verified": True, "is_active": False},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text

    read = await client.get(f"{USERS}/{ada['id']}", headers=headers)
    assert read.status_code == 200
    for body in (changed.json(), read.json()):
        assert (body["role"], body["is_verified"], body["is_active"]) == ("admin", True, False)


async def test_unknown_fields_in_an_admin_update_are_422(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    ada = await register(client, "ada@example.com")
    response = await client.patch(
        f"{USERS}/{ada['id']}", json={"email": "evil@example.com"}, headers=headers
    )
    assert response.status_code == 422
    assert (await client.get(f"{USERS}/{ada['id']}", headers=headers)).json()["email"] == (
        "ada@example.com"
    )


async def test_deactivation_ends_existing_sessions_at_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    tokens = await signed_up(client, "ada@example.com")
    ada_id = await user_id(client, tokens["access_token"])

    response = await client.patch(f"{USERS}/{ada_id}", json={"is_active": False}, headers=headers)
    assert response.status_code == 200

    me = await client.get(ME, headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    relogin = await client.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert relogin.status_code == 403
    assert relogin.json()["code"] == "account_inactive"


async def test_reactivated_user_can_log_in_again(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    ada = await register(client, "ada@example.com")
    await client.patch(f"{USERS}/{ada['id']}", json={"is_active": False}, headers=headers)

    response = await client.patch(f"{USERS}/{ada['id']}", json={"is_active": True}, headers=headers)

    assert response.status_code == 200
    tokens = await login(client, "ada@example.com")
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 200


async def test_promotion_and_demotion_apply_to_the_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    tokens = await signed_up(client, "ada@example.com")
    ada = bearer(tokens["access_token"])
    ada_id = await user_id(client, tokens["access_token"])
    assert (await client.get(USERS, headers=ada)).status_code == 403

    promoted = await client.patch(f"{USERS}/{ada_id}", json={"role": "admin"}, headers=headers)
    assert promoted.status_code == 200
    assert (await client.get(USERS, headers=ada)).status_code == 200

    demoted = await client.patch(f"{USERS}/{ada_id}", json={"role": "user"}, headers=headers)
    assert demoted.status_code == 200
    response = await client.get(USERS, headers=ada)
    assert response.status_code == 403
    assert response.json()["code"] == "admin_required"


@pytest.mark.parametrize(
    ("method", "body"),
    [("PATCH", {"is_active": False}), ("PATCH", {"role": "user"}), ("DELETE", None)],
)
async def test_admin_cannot_deactivate_demote_or_delete_themselves(
    client: httpx.AsyncClient, settings: Settings, method: str, body: dict[str, Any] | None
) -> None:
    headers = await admin_headers(client, settings)
    me = (await client.get(ME, headers=headers)).json()

    response = await client.request(method, f"{USERS}/{me['id']}", json=body, headers=headers)

    assert response.status_code == 409
    assert response.json()["code"] == "cannot_change_self"
    after = await client.get(ME, headers=headers)
    assert after.status_code == 200
    assert (after.json()["role"], after.json()["is_active"]) == ("admin", True)


async def _rows_of(settings: Settings, user: uuid.UUID) -> dict[str, int]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            counts = {}
            for model in (AuthSession, ApiKey, OneTimeToken):
                query = select(func.count()).select_from(model).where(model.user_id == user)
                counts[model.__tablename__] = int((await connection.execute(query)).scalar_one())
    finally:
        await engine.dispose()
    return counts


async def test_deleting_a_user_removes_them_with_sessions_and_keys(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    tokens = await signed_up(client, "ada@example.com")
    ada_id = await user_id(client, tokens["access_token"])
    created = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "ci", "scopes": ["read"]},
        headers=bearer(tokens["access_token"]),
    )
    assert created.status_code == 201, created.text
    assert all(count > 0 for count in (await _rows_of(settings, uuid.UUID(ada_id))).values())

    response = await client.delete(f"{USERS}/{ada_id}", headers=headers)

    assert response.status_code == 204
    assert (await client.get(f"{USERS}/{ada_id}", headers=headers)).status_code == 404
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
    assert (await client.get(ME, headers=bearer(created.json()["key"]))).status_code == 401
    assert await _rows_of(settings, uuid.UUID(ada_id)) == {
        "auth_sessions": 0,
        "api_keys": 0,
        "one_time_tokens": 0,
    }
    assert (await client.get(ME, headers=headers)).status_code == 200
    # The address is free again.
    await register(client, "ada@example.com")


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_user_is_404(
    client: httpx.AsyncClient, settings: Settings, method: str
) -> None:
    headers = await admin_headers(client, settings)
    body = {"is_verified": True} if method == "PATCH" else None

    response = await client.request(method, f"{USERS}/{uuid.uuid4()}", json=body, headers=headers)

    assert response.status_code == 404
    assert response.json()["code"] == "user_not_found"


async def test_an_admins_api_key_cannot_use_admin_routes(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    created = await client.post(
        "/api/v1/auth/api-keys", json={"name": "ops", "scopes": ["read", "write"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    key = bearer(created.json()["key"])
    me = (await client.get(ME, headers=key)).json()

    for method, url in (("GET", USERS), ("GET", f"{USERS}/{me['id']}")):
        response = await client.request(method, url, headers=key)
        assert response.status_code == 403, (method, url)
        assert response.json()["code"] == "session_required"
