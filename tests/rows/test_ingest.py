"""Row ingest: four formats, validation, all-or-nothing, conflicts, limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from tablehouse.config import Settings
from tests.support import databases
from tests.support.accounts import bearer, signed_up
from tests.support.databases import connected

SCHEMAS = "/api/v1/schemas"
ROWS = f"{SCHEMAS}/songs/rows"
SONGS: dict[str, Any] = {
    "name": "songs",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "title", "type": "string", "max_length": 50, "nullable": False},
        {"name": "plays", "type": "integer", "nullable": False, "default": 0},
        {"name": "rating", "type": "float"},
        {"name": "liked", "type": "boolean"},
        {"name": "released", "type": "date"},
        {"name": "added_at", "type": "datetime"},
        {"name": "tags", "type": "json"},
        {"name": "ref", "type": "uuid"},
    ],
}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return databases.settings_for(
        database_url, tmp_path / "data", max_ingest_bytes=10 * 1024 * 1024, ingest_batch_rows=5000
    )


@pytest.fixture
async def headers(client: httpx.AsyncClient) -> dict[str, str]:
    auth = bearer((await signed_up(client, "loader@example.com"))["access_token"])
    created = await client.post(SCHEMAS, json=SONGS, headers=auth)
    assert created.status_code == 201, created.text
    return auth


async def _rows(settings: Settings, order: str = "id") -> list[dict[str, Any]]:
    async with connected(settings) as connection:
        table = (
            await connection.execute(text("SELECT table_name FROM schemas WHERE name='songs'"))
        ).scalar_one()
        result = await connection.execute(text(f'SELECT * FROM {table} ORDER BY "{order}"'))
        return [dict(row._mapping) for row in result]


def _song(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": n, "title": f"Song {n}", **extra}


async def test_json_object_and_array(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    one = await client.post(
        ROWS,
        json=_song(1, tags={"mood": "calm"}, added_at="2026-01-02T03:04:05+02:00"),
        headers=headers,
    )
    assert one.status_code == 201, one.text
    assert one.json()["inserted"] == 1
    many = await client.post(ROWS, json=[_song(2), _song(3, plays=7, liked=True)], headers=headers)
    assert many.json()["inserted"] == 2
    rows = await _rows(settings)
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[0]["plays"] == 0, "the default fills a missing field"
    assert rows[2]["plays"] == 7


async def test_ndjson_and_csv(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    ndjson = "\n".join(json.dumps(_song(n)) for n in range(1, 4)) + "\n"
    response = await client.post(
        ROWS, content=ndjson, headers={**headers, "Content-Type": "application/x-ndjson"}
    )
    assert response.json()["inserted"] == 3
    csv_body = (
        "id,title,rating,liked,released,tags\n"
        '10,"Comma, and ""quotes""",4.5,true,2024-05-01,"{""a"": 1}"\n'
        "11,Plain,,,,\n"
        '12,"Multi\nline",1,no,2020-02-29,[]\n'
    )
    response = await client.post(
        ROWS, content=csv_body, headers={**headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["inserted"] == 3
    rows = {r["id"]: r for r in await _rows(settings)}
    assert rows[10]["title"] == 'Comma, and "quotes"'
    assert rows[11]["rating"] is None
    assert rows[12]["title"] == "Multi\nline"


async def test_one_bad_row_in_a_thousand_rejects_all(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    rows = [_song(n) for n in range(1000)]
    rows[637]["plays"] = "many"
    response = await client.post(ROWS, json=rows, headers=headers)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_rows"
    assert body["detail"] == [
        {"row": 637, "field": "plays", "message": "expected an integer, got 'many'"}
    ]
    assert await _rows(settings) == []


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (_song(1, plays=2**63), "plays"),
        (_song(1, title="a\u0000b"), "title"),
        (_song(1, released="2023-02-30"), "released"),
        (_song(1, added_at="yesterday"), "added_at"),
        (_song(1, title="x" * 51), "title"),
        (_song(1, liked="maybe"), "liked"),
        (_song(1, ref="not-a-uuid"), "ref"),
        (_song(1, extra="?"), "extra"),
        ({"title": "no id"}, "id"),
        (_song(1, title=None), "title"),
    ],
)
async def test_bad_values_are_422_naming_row_and_field(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    settings: Settings,
    row: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(ROWS, json=[_song(0), row], headers=headers)
    assert response.status_code == 422, response.text
    assert {(p["row"], p["field"]) for p in response.json()["detail"]} == {(1, field)}
    assert await _rows(settings) == []


async def test_nan_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    body = '[{"id": 1, "title": "x", "rating": NaN}]'
    response = await client.post(
        ROWS, content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    csv_body = "id,title,rating\n1,x,nan\n"
    response = await client.post(
        ROWS, content=csv_body, headers={**headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "rating"
    assert await _rows(settings) == []


async def test_rows_csv_and_rows_ndjson_read_the_body_as_their_path_says(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    """For clients that send a file's bytes (generated ones send application/octet-stream):
    the path names the format, the Content-Type is not read, and MAX_INGEST_BYTES applies,
    not MAX_BODY_BYTES (1 MiB)."""
    csv_body = "id,title\n" + "".join(f"{n},{'x' * 40}\n" for n in range(1, 50_001))
    assert len(csv_body) > 2 * 1024 * 1024
    binary = {**headers, "Content-Type": "application/octet-stream"}
    loaded = await client.post(f"{ROWS}.csv", content=csv_body, headers=binary)
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["inserted"] == 50_000
    ndjson = "\n".join(json.dumps(_song(n)) for n in range(60_001, 60_003))
    as_ndjson = await client.post(
        f"{ROWS}.ndjson?on_conflict=skip",
        content=ndjson,
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert as_ndjson.status_code == 201, as_ndjson.text
    assert as_ndjson.json()["inserted"] == 2
    not_csv = await client.post(f"{ROWS}.csv", content=ndjson, headers=binary)
    assert not_csv.status_code == 422
    assert not_csv.json()["detail"][0]["loc"] == ["body", "header"]
    assert len(await _rows(settings)) == 50_002


async def test_body_over_the_limit_is_413_and_writes_nothing(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    line = "1" + "," + "x" * 40 + "\n"
    body = "id,title\n" + "".join(f"{n},{'x' * 40}\n" for n in range(500_000))
    assert len(body) > 20 * 1024 * 1024 - len(line) * 2
    response = await client.post(
        ROWS, content=body, headers={**headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"

    async def stream() -> Any:
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)].encode()

    chunked = await client.post(
        ROWS, content=stream(), headers={**headers, "Content-Type": "text/csv"}
    )
    assert chunked.status_code == 413
    assert await _rows(settings) == []


async def test_on_invalid_skip_inserts_the_valid_rows_and_reports_the_rest(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    rows = [_song(1), _song(2, plays="x"), _song(3), _song(4, released="soon")]
    response = await client.post(ROWS, params={"on_invalid": "skip"}, json=rows, headers=headers)
    assert response.status_code == 201
    report = response.json()
    assert report["inserted"] == 2
    assert report["rejected_count"] == 2
    assert [(p["row"], p["field"]) for p in report["rejected"]] == [(1, "plays"), (3, "released")]
    assert [r["id"] for r in await _rows(settings)] == [1, 3]


async def test_on_conflict_modes(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await client.post(ROWS, json=[_song(1), _song(2)], headers=headers)

    clash = await client.post(ROWS, json=[_song(3), _song(2, title="again")], headers=headers)
    assert clash.status_code == 409
    assert clash.json()["code"] == "duplicate_key"
    assert "id=2" in clash.json()["detail"]
    assert "row 1" in clash.json()["detail"]
    assert [r["id"] for r in await _rows(settings)] == [1, 2]

    skip = await client.post(
        ROWS,
        params={"on_conflict": "skip"},
        json=[_song(2, title="ignored"), _song(3)],
        headers=headers,
    )
    assert skip.json()["inserted"] == 1
    assert skip.json()["skipped"] == 1
    rows = {r["id"]: r for r in await _rows(settings)}
    assert rows[2]["title"] == "Song 2"

    update = await client.post(
        ROWS,
        params={"on_conflict": "update"},
        json=[_song(2, title="updated"), _song(4)],
        headers=headers,
    )
    assert update.status_code == 201
    rows = {r["id"]: r for r in await _rows(settings)}
    assert rows[2]["title"] == "updated"
    assert set(rows) == {1, 2, 3, 4}


async def test_duplicate_keys_within_one_body(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    dupes = [_song(1), _song(1, title="second")]
    assert (await client.post(ROWS, json=dupes, headers=headers)).status_code == 409
    assert await _rows(settings) == []
    updated = await client.post(ROWS, params={"on_conflict": "update"}, json=dupes, headers=headers)
    assert updated.status_code == 201
    assert [r["title"] for r in await _rows(settings)] == ["second"]


async def test_conflict_found_in_a_later_batch_rolls_back_earlier_batches(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await client.post(ROWS, json=_song(11_000), headers=headers)
    response = await client.post(ROWS, json=[_song(n) for n in range(12_000)], headers=headers)
    assert response.status_code == 409, "the third batch of 5000 holds the clash"
    assert "row 11000" in response.json()["detail"]
    assert [r["id"] for r in await _rows(settings)] == [11_000]


async def test_bad_bodies_are_4xx(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    cases = [
        ("{not json", "application/json", 400),
        ("id,title\n1,x\n", "application/xml", 415),
        ("id,nope\n1,x\n", "text/csv", 422),
        ('id,title\n1,"unterminated\n', "text/csv", 400),
        ("\xff\xfe", "text/csv", 400),
        ('{"id": 1, "title": "x"}\nnot json\n', "application/x-ndjson", 422),
        ("[1, 2]", "application/json", 422),
    ]
    for body, content_type, status in cases:
        response = await client.post(
            ROWS, content=body.encode("latin-1"), headers={**headers, "Content-Type": content_type}
        )
        assert response.status_code == status, (body, response.text)
    assert await _rows(settings) == []


async def test_others_cannot_load_rows(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    stranger = bearer((await signed_up(client, "stranger@example.com"))["access_token"])
    assert (await client.post(ROWS, json=_song(1), headers=stranger)).status_code == 404
    read_key = (
        await client.post(
            "/api/v1/auth/api-keys", json={"name": "r", "scopes": ["read"]}, headers=headers
        )
    ).json()["key"]
    assert (await client.post(ROWS, json=_song(1), headers=bearer(read_key))).status_code == 403


@pytest.mark.parametrize("drop_first", [False, True])
async def test_dropping_a_dataset_while_rows_stream_in_stays_consistent(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings, drop_first: bool
) -> None:
    body = "id,title\n" + "".join(f"{n},Song {n}\n" for n in range(30_000))
    load = client.post(ROWS, content=body, headers={**headers, "Content-Type": "text/csv"})
    drop = client.delete(f"{SCHEMAS}/songs", headers=headers)
    if drop_first:
        dropped, loaded = await asyncio.gather(drop, load)
    else:
        loaded, dropped = await asyncio.gather(load, drop)
    assert loaded.status_code in (201, 404), loaded.text
    assert dropped.status_code == 204
    async with connected(settings) as connection:
        tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
        catalog = (await connection.execute(text("SELECT count(*) FROM schemas"))).scalar()
    assert catalog == 0
    assert not [name for name in tables if name.startswith("ds_")]
