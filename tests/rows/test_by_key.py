"""One row by its primary key: GET, PATCH and DELETE, key encoding, validation, access."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tablehouse.config import Settings
from tablehouse.rows.convert.keys import encode
from tests.support.accounts import bearer, signed_up
from tests.support.row_tables import SCHEMAS, define, insert_rows

ROWS = f"{SCHEMAS}/songs/rows"
SONGS: dict[str, Any] = {
    "name": "songs",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "title", "type": "string", "max_length": 20, "nullable": False},
        {"name": "plays", "type": "integer", "nullable": False, "default": 0},
        {"name": "ref", "type": "uuid", "unique": True},
        {"name": "tags", "type": "json"},
        {"name": "added_at", "type": "datetime"},
    ],
}
# A composite key whose string parts may hold the separator and the escape character.
SHELF: dict[str, Any] = {
    "name": "shelf",
    "fields": [
        {"name": "room", "type": "string", "primary_key": True},
        {"name": "day", "type": "date", "primary_key": True},
        {"name": "slot", "type": "integer", "primary_key": True},
        {"name": "note", "type": "string"},
    ],
}
REFS = [uuid.UUID(int=n) for n in range(4)]


@pytest.fixture
async def headers(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    auth = bearer((await signed_up(client, "keeper@example.com"))["access_token"])
    await define(client, auth, SONGS)
    await insert_rows(
        settings,
        "songs",
        [{"id": n, "title": f"Song {n}", "plays": n, "ref": REFS[n]} for n in (1, 2, 3)],
    )
    return auth


def _path(dataset: str, *parts: str) -> str:
    return f"{SCHEMAS}/{dataset}/rows/{quote(encode(parts), safe='')}"


async def test_get_one_row(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(f"{ROWS}/2", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": 2,
        "title": "Song 2",
        "plays": 2,
        "ref": str(REFS[2]),
        "tags": None,
        "added_at": None,
    }
    missing = await client.get(f"{ROWS}/99", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "row_not_found"
    bad = await client.get(f"{ROWS}/two", headers=headers)
    assert bad.status_code == 422
    assert bad.json()["detail"] == [
        {
            "loc": ["path", "key", "id"],
            "msg": "id: expected an integer, got 'two'",
            "type": "invalid_value",
        }
    ]


async def test_string_keys_may_hold_slashes_and_commas(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await define(
        client,
        headers,
        {"name": "pages", "fields": [{"name": "path", "type": "string", "primary_key": True}]},
    )
    odd = ["a/b", "x,y", "back\\slash", "sp ace", "?q=1&r#2", "ünï"]
    await insert_rows(settings, "pages", [{"path": p} for p in odd])
    for path in odd:
        response = await client.get(_path("pages", path), headers=headers)
        assert response.status_code == 200, (path, response.text)
        assert response.json() == {"path": path}


async def test_composite_keys(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await define(client, headers, SHELF)
    rooms = ["a,b", "c\\d", "e\\,f", ""]
    await insert_rows(
        settings,
        "shelf",
        [{"room": room, "day": date(2024, 2, 29), "slot": 1, "note": room} for room in rooms],
    )
    for room in rooms:
        path = _path("shelf", room, "2024-02-29", "1")
        found = await client.get(path, headers=headers)
        assert found.status_code == 200, (room, found.text)
        assert found.json() == {"room": room, "day": "2024-02-29", "slot": 1, "note": room}
    written = f"{SCHEMAS}/shelf/rows/" + quote("a\\,b,2024-02-29,1", safe="")
    assert (await client.get(written, headers=headers)).json()["room"] == "a,b"
    changed = await client.patch(
        _path("shelf", "e\\,f", "2024-02-29", "1"), json={"note": "moved"}, headers=headers
    )
    assert changed.json()["note"] == "moved"
    problems = {
        "a,2024-02-29": (["path", "key"], "invalid_key"),
        "a,2024-02-29,1,2": (["path", "key"], "invalid_key"),
        "a\\b,2024-02-29,1": (["path", "key"], "invalid_key"),
        "a,2024-02-30,1": (["path", "key", "day"], "invalid_value"),
        "a,2024-02-29,one": (["path", "key", "slot"], "invalid_value"),
    }
    for key, (loc, kind) in problems.items():
        refused = await client.get(f"{SCHEMAS}/shelf/rows/{quote(key, safe='')}", headers=headers)
        assert refused.status_code == 422, key
        assert (refused.json()["detail"][0]["loc"], refused.json()["detail"][0]["type"]) == (
            loc,
            kind,
        ), key
    absent = await client.get(_path("shelf", "a,b", "2024-02-29", "2"), headers=headers)
    assert absent.status_code == 404
    deleted = await client.delete(_path("shelf", "c\\d", "2024-02-29", "1"), headers=headers)
    assert deleted.status_code == 204
    left = (await client.get(f"{SCHEMAS}/shelf/rows", headers=headers)).json()["rows"]
    assert sorted(row["room"] for row in left) == sorted(["a,b", "e\\,f", ""])


async def test_patch(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    changed = await client.patch(
        f"{ROWS}/1",
        json={"title": "Renamed", "tags": {"k": [1, 2]}, "added_at": "2024-05-01T10:00:00+02:00"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "id": 1,
        "title": "Renamed",
        "plays": 1,
        "ref": str(REFS[1]),
        "tags": {"k": [1, 2]},
        "added_at": "2024-05-01T08:00:00+00:00",
    }
    assert (await client.get(f"{ROWS}/1", headers=headers)).json() == changed.json()
    cleared = await client.patch(f"{ROWS}/1", json={"tags": None, "ref": None}, headers=headers)
    assert cleared.json()["tags"] is None
    listed = await client.get(ROWS, params={"tags": "is.null", "ref": "is.null"}, headers=headers)
    assert [row["id"] for row in listed.json()["rows"]] == [1]


async def test_patch_validates_like_ingest(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    refused = await client.patch(
        f"{ROWS}/1",
        json={
            "id": 5,
            "nope": 1,
            "title": None,
            "plays": "many",
            "ref": "not-a-uuid",
            "added_at": 3,
        },
        headers=headers,
    )
    assert refused.status_code == 422
    problems = {(tuple(p["loc"]), p["type"]) for p in refused.json()["detail"]}
    assert problems == {
        (("body", "id"), "primary_key"),
        (("body", "nope"), "unknown_field"),
        (("body", "title"), "not_nullable"),
        (("body", "plays"), "invalid_value"),
        (("body", "ref"), "invalid_value"),
        (("body", "added_at"), "invalid_value"),
    }
    too_long = await client.patch(f"{ROWS}/1", json={"title": "x" * 21}, headers=headers)
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["msg"] == "title: longer than max_length 20"
    not_changes: list[Any] = [{}, [], [{"title": "x"}], "title"]
    for body in not_changes:
        assert (await client.patch(f"{ROWS}/1", json=body, headers=headers)).status_code == 422
    unchanged = (await client.get(f"{ROWS}/1", headers=headers)).json()
    assert unchanged["title"] == "Song 1"


async def test_patch_conflicts_and_missing_rows(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    taken = await client.patch(f"{ROWS}/1", json={"ref": str(REFS[2])}, headers=headers)
    assert taken.status_code == 409
    assert taken.json()["code"] == "unique_violation"
    assert "'ref'" in taken.json()["detail"]
    assert (await client.get(f"{ROWS}/1", headers=headers)).json()["ref"] == str(REFS[1])
    missing = await client.patch(f"{ROWS}/99", json={"title": "x"}, headers=headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "row_not_found"


async def test_delete(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await client.delete(f"{ROWS}/2", headers=headers)).status_code == 204
    assert (await client.get(f"{ROWS}/2", headers=headers)).status_code == 404
    again = await client.delete(f"{ROWS}/2", headers=headers)
    assert again.status_code == 404
    assert again.json()["code"] == "row_not_found"
    assert (await client.delete(f"{ROWS}/x", headers=headers)).status_code == 422
    remaining = (await client.get(ROWS, headers=headers)).json()["rows"]
    assert [row["id"] for row in remaining] == [1, 3]


async def test_no_request_changes_rows_without_naming_them(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await client.delete(ROWS, headers=headers)).status_code == 405
    assert (await client.patch(ROWS, json={"title": "x"}, headers=headers)).status_code == 405
    assert (await client.delete(f"{ROWS}?id=gt.0", headers=headers)).status_code == 405
    assert (await client.put(f"{ROWS}/1", json={"title": "x"}, headers=headers)).status_code == 405
    remaining = (await client.get(ROWS, headers=headers)).json()["rows"]
    assert [row["title"] for row in remaining] == ["Song 1", "Song 2", "Song 3"]


async def test_access(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    stranger = bearer((await signed_up(client, "stranger@example.com"))["access_token"])
    assert (await client.get(f"{ROWS}/1", headers=stranger)).status_code == 404
    assert (await client.delete(f"{ROWS}/1", headers=stranger)).status_code == 404
    assert (
        await client.patch(f"{ROWS}/1", json={"title": "x"}, headers=stranger)
    ).status_code == 404
    read_key = (
        await client.post(
            "/api/v1/auth/api-keys", json={"name": "r", "scopes": ["read"]}, headers=headers
        )
    ).json()["key"]
    reader = bearer(read_key)
    assert (await client.get(f"{ROWS}/1", headers=reader)).status_code == 200
    for response in (
        await client.delete(f"{ROWS}/1", headers=reader),
        await client.patch(f"{ROWS}/1", json={"title": "x"}, headers=reader),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "scope_required"
    write_key = (
        await client.post(
            "/api/v1/auth/api-keys", json={"name": "w", "scopes": ["write"]}, headers=headers
        )
    ).json()["key"]
    assert (await client.get(f"{ROWS}/1", headers=bearer(write_key))).status_code == 403
    assert (await client.delete(f"{ROWS}/1", headers=bearer(write_key))).status_code == 204
