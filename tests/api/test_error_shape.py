"""Pins the error body every client relies on: ``{"detail": ..., "code": ...}``."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from tablehouse import errors
from tablehouse.api.errors import MAX_LISTED_ERRORS
from tests.support.accounts import bearer, signed_up

router = APIRouter(prefix="/_test")


class Payload(BaseModel):
    name: str = Field(min_length=1)
    count: int


class Numbers(BaseModel):
    numbers: list[int]


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


@router.post("/numbers")
async def numbers(payload: Numbers) -> Numbers:
    return payload


@router.get("/quoting")
async def raise_quoting(length: int) -> None:
    raise errors.BadRequest(f"'{'q' * length}' is not a thing we know", code="unknown_thing")


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


# An error body stays this small whatever the client sent (a few quoted snippets and the
# JSON around them).
SMALL_ERROR_BYTES = 4096


async def test_validation_error_does_not_echo_a_huge_value(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.post(
        "/api/v1/auth/register",
        json={"email": "huge@example.com", "password": "x" * 12, "full_name": "n" * 600_000},
    )
    assert response.status_code == 422
    assert len(response.content) < SMALL_ERROR_BYTES
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "full_name"]
    assert entry["input"].startswith("nnnn")
    assert "599,8" in entry["input"]  # the marker says how much was cut
    assert "characters cut" in entry["input"]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_a_body_that_is_not_json_is_not_echoed_back(
    error_client: httpx.AsyncClient, content_type: str
) -> None:
    response = await error_client.post(
        "/_test/validate",
        content=b'{"name": "' + b"j" * 600_000,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert len(response.content) < SMALL_ERROR_BYTES


async def test_a_huge_object_or_list_as_input_is_summarised(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.post(
        "/_test/validate",
        json={
            "name": list(range(50_000)),
            "count": {"k" * 9: 1} | {str(n): n for n in range(30_000)},
        },
    )
    assert response.status_code == 422
    assert len(response.content) < SMALL_ERROR_BYTES
    inputs = {tuple(entry["loc"]): entry["input"] for entry in response.json()["detail"]}
    assert inputs == {
        ("body", "name"): "[a list of 50,000 items, too long to repeat]",
        ("body", "count"): "{an object of 30,001 members, too long to repeat}",
    }


async def test_many_validation_errors_are_listed_up_to_a_bound_with_their_count(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.post("/_test/numbers", json={"numbers": ["x"] * 100_000})
    assert response.status_code == 422
    body = response.json()
    assert len(body["detail"]) == MAX_LISTED_ERRORS
    assert body["errors_total"] == 100_000
    assert len(response.content) < MAX_LISTED_ERRORS * 200


async def test_a_message_quoting_user_text_is_cut_in_the_middle(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.get("/_test/quoting", params={"length": 500_000})
    assert response.status_code == 400
    assert len(response.content) < SMALL_ERROR_BYTES
    detail = response.json()["detail"]
    assert detail.startswith("'qqqq")
    assert detail.endswith("qq' is not a thing we know")
    assert "characters cut" in detail


async def test_short_messages_and_inputs_are_quoted_whole(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.post("/_test/validate", json={"name": "", "count": "q" * 120})
    assert [entry["input"] for entry in response.json()["detail"]] == ["", "q" * 120]
    quoting = await error_client.get("/_test/quoting", params={"length": 120})
    assert quoting.json()["detail"] == f"'{'q' * 120}' is not a thing we know"


async def test_refused_sql_quotes_a_long_name_cut_short(client: httpx.AsyncClient) -> None:
    auth = bearer((await signed_up(client, "sql@example.com"))["access_token"])
    response = await client.post(
        "/api/v1/query", json={"sql": f"select {'f' * 8000}(1)"}, headers=auth
    )
    assert response.status_code == 400
    assert response.json()["code"] == "function_not_allowed"
    assert response.json()["detail"].startswith("function 'ffff")
    assert "characters cut" in response.json()["detail"]
    assert len(response.content) < SMALL_ERROR_BYTES


@pytest.mark.parametrize(("on_invalid", "status"), [("error", 422), ("skip", 201)])
async def test_a_row_problem_quotes_a_long_field_name_cut_short(
    client: httpx.AsyncClient, on_invalid: str, status: int
) -> None:
    auth = bearer((await signed_up(client, "rows@example.com"))["access_token"])
    fields = [{"name": "id", "type": "integer", "primary_key": True}]
    created = await client.post(
        "/api/v1/schemas", json={"name": "t", "fields": fields}, headers=auth
    )
    assert created.status_code == 201, created.text
    response = await client.post(
        "/api/v1/schemas/t/rows",
        params={"on_invalid": on_invalid},
        json=[{"id": 1, "k" * 300_000: 1}],
        headers=auth,
    )
    assert response.status_code == status
    assert len(response.content) < SMALL_ERROR_BYTES
    body = response.json()
    (problem,) = body["detail"] if status == 422 else body["rejected"]
    assert problem["field"].startswith("kkkk")
    assert "characters cut" in problem["field"]
