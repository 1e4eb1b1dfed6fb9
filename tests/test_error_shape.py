"""Pins the error body every client relies on: ``{"detail": ..., "code": ...}``."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from tablehouse import errors

router = APIRouter(prefix="/_test")


class Payload(BaseModel):
    name: str = Field(min_length=1)
    count: int


@router.get("/not-found")
async def raise_not_found() -> None:
    raise errors.NotFound("dataset 'songs' does not exist", code="schema_not_found")


@router.get("/unauthenticated")
async def raise_unauthenticated() -> None:
    raise errors.NotAuthenticated("token expired")


@router.get("/throttled")
async def raise_throttled() -> None:
    raise errors.Throttled("too many attempts", retry_after_seconds=30)


@router.post("/validate")
async def validate(payload: Payload) -> Payload:
    return payload


@router.get("/crash")
async def crash() -> None:
    raise RuntimeError("connection string postgresql://admin:hunter2@db leaked")


@pytest.fixture
async def error_client(app: FastAPI, client: httpx.AsyncClient) -> httpx.AsyncClient:
    app.include_router(router)
    return client


async def test_domain_error_has_detail_code_and_status(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/_test/not-found")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "dataset 'songs' does not exist",
        "code": "schema_not_found",
    }


async def test_401_asks_for_a_bearer_token(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/_test/unauthenticated")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": "token expired", "code": "not_authenticated"}


async def test_429_says_when_to_retry(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/_test/throttled")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    assert response.json()["code"] == "throttled"


async def test_unknown_route_is_404_in_the_same_shape(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found", "code": "not_found"}


async def test_wrong_method_is_405_in_the_same_shape(error_client: httpx.AsyncClient) -> None:
    response = await error_client.delete("/health")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed", "code": "method_not_allowed"}


async def test_validation_error_keeps_fastapi_shape_and_names_the_field(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.post("/_test/validate", json={"name": "", "count": "many"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert {tuple(item["loc"]) for item in body["detail"]} == {
        ("body", "name"),
        ("body", "count"),
    }
    assert all({"loc", "msg", "type"} <= set(item) for item in body["detail"])


async def test_malformed_json_is_422_not_500(error_client: httpx.AsyncClient) -> None:
    response = await error_client.post(
        "/_test/validate", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_unexpected_error_is_500_with_request_id_and_no_internals(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.get("/_test/crash")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
