"""Every malformed, forged or misused token is a 401 with a Bearer challenge, never a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from tablehouse.api.runtime import Runtime
from tablehouse.app import create_app
from tablehouse.config import load_settings
from tablehouse.core.security.jwt_secret import jwt_signing_secret
from tablehouse.errors import SettingsError
from tests.support import databases
from tests.support.accounts import bearer, signed_up
from tests.support.serving import started

ME = "/api/v1/users/me"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.fixture
async def pair(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signed_up(client, "mallory@example.com")


async def _assert_rejected(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(ME, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert set(response.json()) == {"detail", "code"}


async def test_genuine_token_is_accepted(client: httpx.AsyncClient, pair: dict[str, Any]) -> None:
    response = await client.get(ME, headers=bearer(pair["access_token"]))
    assert response.status_code == 200


async def test_alg_none_is_rejected(client: httpx.AsyncClient, pair: dict[str, Any]) -> None:
    claims = _claims(pair["access_token"])
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    await _assert_rejected(client, bearer(unsigned))


async def test_token_signed_with_another_key_is_rejected(
    client: httpx.AsyncClient, pair: dict[str, Any]
) -> None:
    forged = jwt.encode(_claims(pair["access_token"]), "another key " * 4, algorithm="HS256")
    await _assert_rejected(client, bearer(forged))


async def test_modified_payload_is_rejected(
    client: httpx.AsyncClient, pair: dict[str, Any]
) -> None:
    header, _payload, signature = pair["access_token"].split(".")
    claims = _claims(pair["access_token"]) | {"sub": "00000000-0000-0000-0000-000000000000"}
    await _assert_rejected(client, bearer(f"{header}.{_b64(claims)}.{signature}"))


async def test_hs512_token_is_rejected_when_hs256_is_configured(
    client: httpx.AsyncClient, app: FastAPI, pair: dict[str, Any]
) -> None:
    runtime: Runtime = app.state.runtime
    secret = jwt_signing_secret(runtime.settings).get_secret_value()
    other_alg = jwt.encode(_claims(pair["access_token"]), secret, algorithm="HS512")
    await _assert_rejected(client, bearer(other_alg))


async def test_expired_token_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, pair: dict[str, Any]
) -> None:
    runtime: Runtime = app.state.runtime
    claims = _claims(pair["access_token"])
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = runtime.tokens.issue(user_id=claims["sub"], session_id=claims["sid"], now=past)
    response = await client.get(ME, headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"


async def test_wrong_audience_or_issuer_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, pair: dict[str, Any]
) -> None:
    runtime: Runtime = app.state.runtime
    secret = jwt_signing_secret(runtime.settings).get_secret_value()
    for change in ({"aud": "someone-else"}, {"iss": "evil"}):
        token = jwt.encode(_claims(pair["access_token"]) | change, secret, algorithm="HS256")
        await _assert_rejected(client, bearer(token))


async def test_token_of_another_type_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, pair: dict[str, Any]
) -> None:
    runtime: Runtime = app.state.runtime
    secret = jwt_signing_secret(runtime.settings).get_secret_value()
    refresh_typed = jwt.encode(
        _claims(pair["access_token"]) | {"type": "refresh"}, secret, algorithm="HS256"
    )
    await _assert_rejected(client, bearer(refresh_typed))


async def test_refresh_token_used_as_access_token_is_rejected(
    client: httpx.AsyncClient, pair: dict[str, Any]
) -> None:
    await _assert_rejected(client, bearer(pair["refresh_token"]))


async def test_a_validly_signed_token_for_a_forged_session_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, pair: dict[str, Any]
) -> None:
    runtime: Runtime = app.state.runtime
    claims = _claims(pair["access_token"])
    # Right key, right user, but not the access token the session holds.
    other = runtime.tokens.issue(
        user_id=claims["sub"], session_id=claims["sid"], now=datetime.now(UTC)
    )
    await _assert_rejected(client, bearer(other))


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer a.b.c",
        "Bearer ....",
        "Bearer " + "x" * 10_000,
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.",
        "Bearer \x7f\x00garbage",
        "Bearer th_",
        "Bearer th_short",
        "Bearer th_abc_def",
        "Basic dXNlcjpwYXNz",
        "Token abc",
    ],
)
async def test_garbage_authorization_headers_are_401(
    client: httpx.AsyncClient, authorization: str
) -> None:
    await _assert_rejected(client, {"Authorization": authorization})


def _es256_keys() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


async def test_es256_tokens_work_and_resist_key_confusion(
    database_url: str, tmp_path: Path
) -> None:
    private, public = _es256_keys()
    settings = databases.settings_for(
        database_url,
        tmp_path / "data",
        jwt_algorithm="ES256",
        jwt_private_key=private,
        jwt_public_key=public,
    )
    app = create_app(settings)
    async with started(app) as client:
        pair = await signed_up(client, "curve@example.com")
        assert jwt.get_unverified_header(pair["access_token"])["alg"] == "ES256"
        assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
        # The classic confusion: an HMAC token keyed with the public key.
        confused = _hs256_with_key(_claims(pair["access_token"]), public)
        await _assert_rejected(client, bearer(confused))


def _hs256_with_key(claims: dict[str, Any], key: str) -> str:
    header = _b64({"alg": "HS256", "typ": "JWT"})
    body = _b64(claims)
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_asymmetric_algorithm_without_keys_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="JWT_PRIVATE_KEY and JWT_PUBLIC_KEY"):
        load_settings(_env_file=None, jwt_algorithm="RS256")


async def test_a_malformed_key_stops_start_up_naming_the_variable(
    database_url: str, tmp_path: Path
) -> None:
    _private, public = _es256_keys()
    settings = databases.settings_for(
        database_url,
        tmp_path / "data",
        jwt_algorithm="ES256",
        jwt_private_key="-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----",
        jwt_public_key=public,
    )
    app = create_app(settings)
    with pytest.raises(SettingsError, match="JWT_PRIVATE_KEY: not a usable ES256 key"):
        async with app.router.lifespan_context(app):
            pass
    assert not (tmp_path / "data" / "jwt_secret").exists(), "no HMAC secret for ES256"
