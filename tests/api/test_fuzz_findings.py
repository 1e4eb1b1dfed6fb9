"""Regressions for what the schemathesis run (tests/api/test_fuzz.py) found, one per finding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI

from tablehouse.analytics.store.client import StoreTarget
from tablehouse.config import Settings
from tests.support.accounts import bearer, signed_up
from tests.support.analytics_store import history_of, with_analytics
from tests.support.query_helpers import CUSTOMERS
from tests.support.serving import serving

NUL = "a\x00b"


@pytest.fixture
async def ada(client: httpx.AsyncClient) -> dict[str, str]:
    return bearer((await signed_up(client, "ada@example.com"))["access_token"])


def assert_refused_at(response: httpx.Response, location: list[str | int], words: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    problem = next(p for p in body["detail"] if p["loc"] == location)
    assert words in problem["msg"]


async def test_nul_in_an_api_key_name_is_a_422_not_a_500(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/auth/api-keys", json={"name": NUL, "scopes": ["query"]}, headers=ada
    )
    assert_refused_at(response, ["body", "name"], "NUL character")
    keys = await client.get("/api/v1/auth/api-keys", headers=ada)
    assert keys.json() == []


async def test_nul_in_a_full_name_is_refused(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.patch("/api/v1/users/me", json={"full_name": NUL}, headers=ada)
    assert_refused_at(response, ["body", "full_name"], "NUL character")


async def test_nul_in_dataset_descriptions_and_defaults_is_refused_and_nothing_is_created(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    described = {**CUSTOMERS, "description": NUL}
    response = await client.post("/api/v1/schemas", json=described, headers=ada)
    assert_refused_at(response, ["body", "description"], "NUL character")

    fields = [*CUSTOMERS["fields"], {"name": "note", "type": "string", "default": NUL}]
    response = await client.post(
        "/api/v1/schemas", json={**CUSTOMERS, "fields": fields}, headers=ada
    )
    assert response.status_code == 422, response.text
    assert "NUL character" in response.text

    listed = await client.get("/api/v1/schemas", headers=ada)
    assert listed.json()["total"] == 0


async def test_an_offset_beyond_any_integer_column_is_a_422_not_a_500(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    huge = await client.get("/api/v1/schemas", params={"offset": 2**64}, headers=ada)
    assert huge.status_code == 422, huge.text
    assert huge.json()["detail"][0]["loc"] == ["query", "offset"]

    largest = await client.get("/api/v1/schemas", params={"offset": 2**31 - 1}, headers=ada)
    assert largest.status_code == 200, largest.text
    assert largest.json()["items"] == []


@pytest.fixture
async def analytics_client(
    settings: Settings, analytics_target: StoreTarget, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serving(with_analytics(settings, analytics_target, tmp_path / "spool")) as served:
        yield served


@pytest.mark.parametrize(
    ("path", "params", "logged"),
    [
        ("/api/v1/queries", {"from": "1150-02-26T02:09:53+22:50"}, 1),
        ("/api/v1/queries", {"to": "0077-02-06T18:38:20Z"}, 0),
        ("/api/v1/queries", {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T00:00:00Z"}, 1),
        ("/api/v1/queries", {"from": "2400-01-01T00:00:00Z", "to": "2500-01-01"}, 0),
        ("/api/v1/analytics/queries/summary", {"to": "0380-03-30T11:47:42.3-18:12"}, None),
        (
            "/api/v1/analytics/queries/summary",
            {"from": "0001-01-01T00:00:00Z", "to": "1901-01-01", "interval": "day"},
            None,
        ),
    ],
)
async def test_history_times_beyond_the_logs_range_mean_its_ends_not_a_500(
    analytics_client: tuple[FastAPI, httpx.AsyncClient],
    path: str,
    params: dict[str, str],
    logged: int | None,
) -> None:
    _, client = analytics_client
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    ran = await client.post("/api/v1/query", json={"sql": "SELECT 1"}, headers=headers)
    assert ran.status_code == 200, ran.text
    await history_of(client, headers, expect=1)

    response = await client.get(path, params=params, headers=headers)

    assert response.status_code == 200, response.text
    if logged is not None:
        assert response.json()["total"] == logged


async def test_history_times_are_iso_8601_not_unix_seconds(
    analytics_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = analytics_client
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    seconds = await client.get("/api/v1/queries", params={"to": "466853"}, headers=headers)
    assert_refused_at(seconds, ["query", "to"], "ISO 8601")

    iso = await client.get(
        "/api/v1/queries", params={"to": "2026-01-31T12:00:00Z"}, headers=headers
    )
    assert iso.status_code == 200, iso.text


# The contract: what the OpenAPI document accepts, the server accepts, and what it refuses,
# the server refuses (schemathesis's positive_data_acceptance and negative_data_rejection).


def _agreement(document: dict[str, Any], schema: dict[str, Any], value: object) -> bool:
    """Whether ``value`` fits ``schema``, its references resolved in ``document``."""
    root = {**schema, "components": document["components"]}
    return bool(jsonschema_rs.Draft202012Validator(root, validate_formats=True).is_valid(value))


def _body_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    return dict(body["schema"])


@pytest.mark.parametrize(
    ("path", "method", "url", "body", "accepted"),
    [
        # Passwords: the policy's bounds (8 to 128), where the document said 512 and no minimum.
        ("/api/v1/auth/register", "post", None, {"password": "x" * 7}, False),
        ("/api/v1/auth/register", "post", None, {"password": "x" * 8}, True),
        ("/api/v1/auth/register", "post", None, {"password": "x" * 128}, True),
        ("/api/v1/auth/register", "post", None, {"password": "x" * 129}, False),
        # An address under .test (reserved for testing) is taken, as the document's format says.
        ("/api/v1/auth/register", "post", None, {"email": "grace@example.test"}, True),
        # Dataset and field names: the pattern, 63 characters, no reserved word in any case.
        ("/api/v1/schemas", "post", None, {"name": "n" * 63}, True),
        ("/api/v1/schemas", "post", None, {"name": "n" * 64}, False),
        ("/api/v1/schemas", "post", None, {"name": ""}, False),
        ("/api/v1/schemas", "post", None, {"name": "SeLeCt"}, False),
        ("/api/v1/schemas", "post", None, {"name": "orders\n"}, False),
        ("/api/v1/schemas", "post", None, {"name": "orders", "description": "a\x00b"}, False),
        ("/api/v1/schemas", "post", None, {"fields": [{"name": "id", "type": "integer"}]}, False),
        (
            "/api/v1/schemas",
            "post",
            None,
            {"fields": [{"name": "id", "type": "date", "primary_key": True, "nullable": True}]},
            False,
        ),
        (
            "/api/v1/schemas",
            "post",
            None,
            {"fields": [{"name": "id", "type": "date", "primary_key": True, "default": 1}]},
            False,
        ),
        # Nothing to change is refused, and the document says so.
        ("/api/v1/schemas/{name}", "patch", "/api/v1/schemas/customers", {}, False),
        (
            "/api/v1/schemas/{name}",
            "patch",
            "/api/v1/schemas/customers",
            {"description": None},
            False,
        ),
        ("/api/v1/schemas/{name}", "patch", "/api/v1/schemas/customers", {"changes": []}, False),
        (
            "/api/v1/schemas/{name}",
            "patch",
            "/api/v1/schemas/customers",
            {"description": "people"},
            True,
        ),
        (
            "/api/v1/schemas/{name}/rows/{key}",
            "patch",
            "/api/v1/schemas/customers/rows/1",
            {},
            False,
        ),
        (
            "/api/v1/schemas/{name}/rows/{key}",
            "patch",
            "/api/v1/schemas/customers/rows/1",
            {"city": "Paris"},
            True,
        ),
        # A new password needs the current one.
        ("/api/v1/users/me", "patch", None, {"password": "new password 1"}, False),
        ("/api/v1/users/me", "patch", None, {"password": None}, True),
    ],
)
async def test_the_document_and_the_server_agree_on_what_a_body_may_be(
    client: httpx.AsyncClient,
    ada: dict[str, str],
    path: str,
    method: str,
    url: str | None,
    body: dict[str, Any],
    accepted: bool,
) -> None:
    document = (await client.get("/openapi.json")).json()
    created = await client.post("/api/v1/schemas", json=CUSTOMERS, headers=ada)
    assert created.status_code == 201, created.text
    loaded = await client.post(
        "/api/v1/schemas/customers/rows", json=[{"id": 1, "name": "Ada"}], headers=ada
    )
    assert loaded.status_code == 201, loaded.text
    defaults: dict[str, dict[str, Any]] = {
        "/api/v1/auth/register": {"email": "grace@example.com", "password": "x" * 12},
        "/api/v1/schemas": {**CUSTOMERS, "name": "orders"},
    }
    body = {**defaults.get(path, {}), **body}

    assert _agreement(document, _body_schema(document, path, method), body) is accepted
    response = await client.request(method, url or path, json=body, headers=ada)
    assert (response.status_code < 300) is accepted, response.text
    if not accepted:
        assert response.status_code == 422, response.text


async def test_the_document_states_this_servers_query_limits(
    client: httpx.AsyncClient, settings: Settings, ada: dict[str, str]
) -> None:
    document = (await client.get("/openapi.json")).json()
    request = document["components"]["schemas"]["QueryRequest"]["properties"]
    assert request["limit"]["anyOf"][0]["maximum"] == settings.query_max_rows
    assert request["timeout_ms"]["anyOf"][0]["maximum"] == settings.query_timeout_ms

    beyond = {"sql": "SELECT 1", "timeout_ms": settings.query_timeout_ms + 1}
    response = await client.post("/api/v1/query", json=beyond, headers=ada)
    assert_refused_at(response, ["body", "timeout_ms"], "at most")


@pytest.mark.parametrize("order", ["", "id.sideways", ",id"])
async def test_an_order_outside_the_documented_pattern_is_refused(
    client: httpx.AsyncClient, ada: dict[str, str], order: str
) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/api/v1/schemas/{name}/rows"]["get"]
    schema = next(p["schema"] for p in operation["parameters"] if p["name"] == "order")
    assert not _agreement(document, schema, order)
    assert _agreement(document, schema, "name.desc,id")
    created = await client.post("/api/v1/schemas", json=CUSTOMERS, headers=ada)
    assert created.status_code == 201, created.text

    response = await client.get(
        "/api/v1/schemas/customers/rows", params={"order": order}, headers=ada
    )
    assert_refused_at(response, ["query", "order"], "")


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("id.in.(1,2)", True),
        ('name.in.("Ada, Countess",Grace)', True),
        ("name.in.()", True),
        ("city.is.null", True),
        ("name.like.*a*", True),
        ("name.eq.a.b", True),
        ("id", False),
        ("id.between.1", False),
        ("id.in.1", False),
        ('name.in.("Ada)', False),
        ('name.in.("Ada"x)', False),
        ("city.is.maybe", False),
        (f"id.in.({','.join(map(str, range(1001)))})", False),
    ],
)
async def test_a_filter_is_refused_exactly_when_outside_the_documented_pattern(
    client: httpx.AsyncClient, ada: dict[str, str], value: str, fits: bool
) -> None:
    """?filter= is declared so generated clients can filter; its pattern is the grammar the
    server reads (field, operator, a value of the operator's shape)."""
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/api/v1/schemas/{name}/rows"]["get"]
    schema = next(p["schema"] for p in operation["parameters"] if p["name"] == "filter")
    assert _agreement(document, schema, [value]) is fits
    created = await client.post("/api/v1/schemas", json=CUSTOMERS, headers=ada)
    assert created.status_code == 201, created.text

    response = await client.get(
        "/api/v1/schemas/customers/rows", params={"filter": value}, headers=ada
    )
    assert (response.status_code == 200) is fits, response.text
    if not fits:
        assert_refused_at(response, ["query", "filter"], "")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/schemas", "GET, POST"),
        ("/api/v1/schemas/customers", "GET, PATCH, DELETE"),
        ("/api/v1/schemas/customers/rows", "GET, POST"),
        ("/api/v1/schemas/customers/rows/1", "GET, PATCH, DELETE"),
        ("/api/v1/auth/verify/confirm", "GET, POST"),
    ],
)
async def test_a_405_lists_every_method_the_path_serves(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    response = await client.request("PUT", path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    assert response.json() == {"detail": "Method Not Allowed", "code": "method_not_allowed"}


async def test_a_unique_field_added_to_a_dataset_is_unique_not_a_500(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    created = await client.post("/api/v1/schemas", json=CUSTOMERS, headers=ada)
    assert created.status_code == 201, created.text
    unique = {"name": "ref", "type": "float", "unique": True}
    added = await client.patch(
        "/api/v1/schemas/customers",
        json={"changes": [{"op": "add_field", "field": unique}]},
        headers=ada,
    )
    assert added.status_code == 200, added.text
    assert added.json()["fields"][-1]["unique"] is True

    rows = [{"id": 1, "name": "Ada", "ref": 1.5}, {"id": 2, "name": "Grace", "ref": 1.5}]
    twice = await client.post("/api/v1/schemas/customers/rows", json=rows, headers=ada)
    assert twice.status_code == 409, twice.text
    assert twice.json()["code"] == "unique_violation"

    dropped = await client.patch(
        "/api/v1/schemas/customers",
        json={"changes": [{"op": "drop_field", "name": "ref"}]},
        headers=ada,
    )
    assert dropped.status_code == 200, dropped.text


@pytest.mark.parametrize("field", ["username", "password"])
async def test_nul_in_the_password_form_is_a_422_not_a_500(
    client: httpx.AsyncClient, field: str
) -> None:
    form = {"username": "ada@example.com", "password": "correct horse battery", field: NUL}
    response = await client.post("/api/v1/auth/token", data=form)
    assert_refused_at(response, ["body", field], "NUL")
