"""A JSON array of rows is parsed one element at a time (ijson), with the values orjson
would give, and loads exactly as a whole document did: all or nothing, every row counted."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tablehouse.config import Settings
from tablehouse.errors import BadRequest
from tablehouse.rows.bodies.parsing import json_values
from tests.support import databases
from tests.support.accounts import bearer, signed_up

ROWS = "/api/v1/schemas/readings/rows"
READINGS: dict[str, Any] = {
    "name": "readings",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "value", "type": "float"},
        {"name": "extra", "type": "json"},
    ],
}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return databases.settings_for(database_url, tmp_path / "data", ingest_batch_rows=700)


@pytest.fixture
async def headers(client: httpx.AsyncClient) -> dict[str, str]:
    auth = bearer((await signed_up(client, "arrays@example.com"))["access_token"])
    created = await client.post("/api/v1/schemas", json=READINGS, headers=auth)
    assert created.status_code == 201, created.text
    return auth


def _values(body: bytes) -> list[Any]:
    return list(json_values(io.BytesIO(body)))


def test_array_elements_come_as_orjson_gives_them() -> None:
    rows = [
        {"id": 1, "value": 0.1, "extra": {"a": [1.5, -0.0, 1e300, {"b": 2.5e-7}], "n": None}},
        {"id": 2, "value": -3, "extra": [True, "x", 12345678901234567]},
        7.25,
    ]
    body = orjson.dumps(rows)
    parsed = _values(b"  \n" + body)
    assert parsed == orjson.loads(body)
    assert [type(v) for v in parsed[0]["extra"]["a"][:3]] == [float, float, float]
    assert str(parsed[0]["extra"]["a"][1]) == "-0.0"


def test_a_single_object_is_one_row() -> None:
    assert _values(b'{"id": 1, "value": 2.5}') == [{"id": 1, "value": 2.5}]


def test_integers_stay_exact_however_large() -> None:
    assert _values(b"[123456789012345678901234567890, -9223372036854775809]") == [
        123456789012345678901234567890,
        -9223372036854775809,
    ]


@pytest.mark.parametrize(
    "body",
    [b"[{}, {", b'[{"a": 1}] [2]', b"[1, ]", b"[NaN]", b'[{"a": "\xff"}]', b"[1e400]"],
)
def test_a_broken_array_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest) as refused:
        _values(body)
    assert refused.value.code == "invalid_json"
    assert len(refused.value.message) < 200, "the reason, not the input around it"


def test_nesting_deeper_than_orjson_allows_is_400_not_a_recursion_error() -> None:
    deep = b"[" + b'{"a": [' * 3000 + b"]}" * 3000 + b"]"
    with pytest.raises(BadRequest, match="nested deeper"):
        _values(deep)


async def test_an_array_across_many_runs_and_batches_loads_every_row(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    rows = [{"id": n, "value": n / 4, "extra": {"n": n}} for n in range(5_000)]
    loaded = await client.post(ROWS, json=rows, headers=headers)
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["inserted"] == 5_000
    last = await client.get(f"{ROWS}/4999", headers=headers)
    assert last.json() == {"id": 4999, "value": 4999 / 4, "extra": {"n": 4999}}


async def test_broken_json_after_written_batches_is_400_and_writes_nothing(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = orjson.dumps([{"id": n} for n in range(3_000)])[:-1] + b", {oops}]"
    response = await client.post(
        ROWS, content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_json"
    count = await client.get(ROWS, params={"count": "exact"}, headers=headers)
    assert count.json()["count"] == 0


async def test_invalid_rows_late_in_an_array_are_reported_by_index(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    rows: list[Any] = [{"id": n} for n in range(2_500)]
    rows[2_345] = {"id": 2_345, "value": "warm"}
    rows[2_400] = {"id": 2**70}
    response = await client.post(ROWS, json=rows, headers=headers, params={"on_invalid": "skip"})
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["inserted"] == 2_498
    assert [(p["row"], p["field"]) for p in report["rejected"]] == [(2_345, "value"), (2_400, "id")]
