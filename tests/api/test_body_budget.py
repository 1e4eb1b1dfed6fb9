"""Every request body within MAX_BODY_BYTES, in-process: refused with 413 in the error
shape, with the request id, whether it declares its size or streams it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tablehouse.config import Settings
from tests.support import databases

REGISTER = "/api/v1/auth/register"
LIMIT = 64 * 1024


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return databases.settings_for(database_url, tmp_path / "data", max_body_bytes=LIMIT)


def _registration(full_name_bytes: int) -> bytes:
    return (
        b'{"email": "big@example.com", "password": "long enough password", "full_name": "'
        + b"x" * full_name_bytes
        + b'"}'
    )


async def _streamed(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


async def test_a_declared_body_over_the_limit_is_413_naming_the_setting(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        REGISTER, content=_registration(LIMIT), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"the body is larger than the {LIMIT:,}-byte limit of this endpoint "
        "(MAX_BODY_BYTES)",
        "code": "payload_too_large",
    }
    assert response.headers["X-Request-ID"]
    assert response.headers["Connection"] == "close"


async def test_a_streamed_body_over_the_limit_is_413_not_fastapis_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        REGISTER,
        content=_streamed(_registration(LIMIT)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert len(response.content) < 200, "the answer never quotes the body"


async def test_a_body_within_the_limit_is_handled(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER,
        content=_streamed(_registration(100)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
