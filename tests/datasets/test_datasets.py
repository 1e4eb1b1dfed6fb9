"""Datasets: a schema over the API becomes a real, versioned table."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from tablehouse.config import Settings
from tablehouse.core import migrations
from tests.support.accounts import bearer, login, promote_to_admin, signed_up
from tests.support.databases import connected

SCHEMAS = "/api/v1/schemas"
SONGS: dict[str, Any] = {
    "name": "songs",
    "description": "What we listen to",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "title", "type": "string", "max_length": 200, "nullable": False},
        {"name": "artist", "type": "string"},
        {"name": "plays", "type": "integer", "default": 0, "nullable": False},
        {"name": "released", "type": "date"},
        {"name": "liked", "type": "boolean", "default": False},
        {"name": "tags", "type": "json"},
        {"name": "added_at", "type": "datetime"},
        {"name": "ref", "type": "uuid", "unique": True},
        {"name": "rating", "type": "float"},
    ],
}


@pytest.fixture
async def headers(client: httpx.AsyncClient) -> dict[str, str]:
    pair = await signed_up(client, "owner@example.com")
    return bearer(pair["access_token"])


async def _tables(settings: Settings) -> set[str]:
    async with connected(settings) as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def _columns(settings: Settings, table: str) -> list[str]:
    async with connected(settings) as connection:
        columns = await connection.run_sync(lambda c: inspect(c).get_columns(table))
        return [column["name"] for column in columns]


async def _sql(settings: Settings, statement: str) -> None:
    async with connected(settings, begin=True) as connection:
        await connection.execute(text(statement))


async def _table_of(settings: Settings, name: str) -> str:
    async with connected(settings) as connection:
        result = await connection.execute(
            text("SELECT table_name FROM schemas WHERE name = :n"), {"n": name}
        )
        return str(result.scalar_one())


async def test_dataset_lifecycle(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    created = await client.post(SCHEMAS, json=SONGS, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert created.json()["row_count"] == 0
    table = await _table_of(settings, "songs")
    assert table.startswith("ds_")
    assert table in await _tables(settings)

    listed = await client.get(SCHEMAS, headers=headers)
    assert [item["name"] for item in listed.json()["items"]] == ["songs"]
    assert listed.json()["total"] == 1
    one = await client.get(f"{SCHEMAS}/songs", headers=headers)
    assert one.json()["fields"][0] == {
        "name": "id",
        "type": "integer",
        "description": None,
        "nullable": False,
        "primary_key": True,
        "unique": False,
        "default": None,
        "max_length": None,
    }

    report = await client.post(
        f"{SCHEMAS}/validate", json=SONGS | {"name": "songs2"}, headers=headers
    )
    assert report.json()["valid"] is True
    assert "CREATE TABLE" in report.json()["ddl"]["postgresql"]
    assert "JSONB" in report.json()["ddl"]["postgresql"]
    assert "CREATE TABLE" in report.json()["ddl"]["sqlite"]
    assert "songs2" not in {
        item["name"] for item in (await client.get(SCHEMAS, headers=headers)).json()["items"]
    }

    changes = [
        {"op": "add_field", "field": {"name": "album", "type": "string"}},
        {"op": "rename_field", "name": "artist", "new_name": "performer"},
        {"op": "drop_field", "name": "rating"},
    ]
    for change in changes:
        response = await client.patch(
            f"{SCHEMAS}/songs", json={"changes": [change]}, headers=headers
        )
        assert response.status_code == 200, response.text
    columns = await _columns(settings, table)
    assert "album" in columns
    assert "performer" in columns
    assert "artist" not in columns
    assert "rating" not in columns

    versions = (await client.get(f"{SCHEMAS}/songs/versions", headers=headers)).json()
    assert [v["number"] for v in versions] == [1, 2, 3, 4]
    assert [v["change"].get("changes", [{}])[0].get("op") for v in versions[1:]] == [
        "add_field",
        "rename_field",
        "drop_field",
    ]
    assert versions[0]["change"] == {"op": "create"}
    assert "CREATE TABLE" in versions[0]["ddl"]
    assert versions[1]["ddl"]

    deleted = await client.delete(f"{SCHEMAS}/songs", headers=headers)
    assert deleted.status_code == 204
    assert (await client.get(f"{SCHEMAS}/songs", headers=headers)).status_code == 404
    assert table not in await _tables(settings)


@pytest.mark.parametrize(
    ("definition", "where"),
    [
        (SONGS | {"name": 'x"; DROP TABLE users;--'}, ["body", "name"]),
        (SONGS | {"name": "select"}, ["body", "name"]),
        (SONGS | {"name": "a" * 64}, ["body", "name"]),
        (
            SONGS | {"fields": [*SONGS["fields"], {"name": "TITLE", "type": "string"}]},
            ["body", "fields", 10, "name"],
        ),
        (
            SONGS | {"fields": [{"name": "title", "type": "string"}]},
            ["body", "fields"],
        ),
        (
            SONGS
            | {
                "fields": [{"name": "id", "type": "integer", "primary_key": True, "nullable": True}]
            },
            ["body", "fields", 0],
        ),
        (
            SONGS | {"fields": [{"name": "ok", "type": "decimal", "primary_key": True}]},
            ["body", "fields", 0, "type"],
        ),
        (
            SONGS | {"fields": [{"name": 'a"b', "type": "string", "primary_key": True}]},
            ["body", "fields", 0, "name"],
        ),
    ],
)
async def test_bad_definitions_are_422_and_change_nothing(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    settings: Settings,
    definition: dict[str, Any],
    where: list[str | int],
) -> None:
    before = await _tables(settings)
    response = await client.post(SCHEMAS, json=definition, headers=headers)
    assert response.status_code == 422, response.text
    assert where in [error["loc"] for error in response.json()["detail"]]
    assert await _tables(settings) == before
    assert (await client.get(SCHEMAS, headers=headers)).json()["total"] == 0
    report = await client.post(f"{SCHEMAS}/validate", json=definition, headers=headers)
    assert report.status_code == 200
    assert report.json()["valid"] is False
    assert where in [problem["loc"] for problem in report.json()["problems"]]


async def test_two_users_each_own_a_songs_dataset(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    other = bearer((await signed_up(client, "other@example.com"))["access_token"])
    assert (await client.post(SCHEMAS, json=SONGS, headers=headers)).status_code == 201
    assert (
        await client.post(SCHEMAS, json=SONGS | {"description": "theirs"}, headers=other)
    ).status_code == 201
    mine = (await client.get(f"{SCHEMAS}/songs", headers=headers)).json()
    theirs = (await client.get(f"{SCHEMAS}/songs", headers=other)).json()
    assert mine["id"] != theirs["id"]
    assert theirs["description"] == "theirs"
    await client.delete(f"{SCHEMAS}/songs", headers=other)
    assert (await client.get(f"{SCHEMAS}/songs", headers=other)).status_code == 404
    assert (await client.get(f"{SCHEMAS}/songs", headers=headers)).status_code == 200


async def test_others_get_404_for_my_dataset(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    stranger = bearer((await signed_up(client, "stranger@example.com"))["access_token"])
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    for method, path in [
        ("GET", "songs"),
        ("PATCH", "songs"),
        ("DELETE", "songs"),
        ("GET", "songs/versions"),
    ]:
        response = await client.request(
            method,
            f"{SCHEMAS}/{path}",
            params={"owner": me["id"]},
            json={"description": "x"} if method == "PATCH" else None,
            headers=stranger,
        )
        assert response.status_code == 404, (method, path)


async def test_duplicate_name_is_409(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await client.post(SCHEMAS, json=SONGS, headers=headers)).status_code == 201
    again = await client.post(SCHEMAS, json=SONGS, headers=headers)
    assert again.status_code == 409
    assert again.json()["code"] == "schema_exists"


async def test_concurrent_creates_of_one_name_give_one_201_and_no_orphan(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    responses = await asyncio.gather(
        *(client.post(SCHEMAS, json=SONGS, headers=headers) for _ in range(5))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409, 409]
    dataset_tables = {t for t in await _tables(settings) if t.startswith("ds_")}
    assert dataset_tables == {await _table_of(settings, "songs")}


async def test_required_field_cannot_be_added_to_a_table_with_rows(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    table = await _table_of(settings, "songs")
    await _sql(settings, f"INSERT INTO {table} (id, title, plays) VALUES (1, 'Song', 3)")
    refused = await client.patch(
        f"{SCHEMAS}/songs",
        json={
            "changes": [
                {"op": "add_field", "field": {"name": "genre", "type": "string", "nullable": False}}
            ]
        },
        headers=headers,
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "table_not_empty"
    assert "genre" not in await _columns(settings, table)
    assert (await client.get(f"{SCHEMAS}/songs", headers=headers)).json()["version"] == 1

    with_default = await client.patch(
        f"{SCHEMAS}/songs",
        json={
            "changes": [
                {
                    "op": "add_field",
                    "field": {
                        "name": "genre",
                        "type": "string",
                        "nullable": False,
                        "default": "pop",
                    },
                }
            ]
        },
        headers=headers,
    )
    assert with_default.status_code == 200, with_default.text
    async with connected(settings) as connection:
        genre = (await connection.execute(text(f"SELECT genre, plays FROM {table}"))).one()
    assert tuple(genre) == ("pop", 3)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"op": "drop_field", "name": "id"}, ["body", "changes", 0, "name"]),
        ({"op": "drop_field", "name": "nope"}, ["body", "changes", 0, "name"]),
        (
            {"op": "rename_field", "name": "title", "new_name": "ARTIST"},
            ["body", "changes", 0, "new_name"],
        ),
        (
            {"op": "rename_field", "name": "title", "new_name": "from"},
            ["body", "changes", 0, "rename_field", "new_name"],
        ),
        (
            {"op": "add_field", "field": {"name": "Title", "type": "string"}},
            ["body", "changes", 0, "field"],
        ),
        (
            {"op": "add_field", "field": {"name": "pk2", "type": "integer", "primary_key": True}},
            ["body", "changes", 0, "field"],
        ),
    ],
)
async def test_impossible_changes_are_422_and_change_nothing(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    change: dict[str, Any],
    where: list[str | int],
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    response = await client.patch(f"{SCHEMAS}/songs", json={"changes": [change]}, headers=headers)
    assert response.status_code == 422, response.text
    assert where in [error["loc"] for error in response.json()["detail"]]
    assert (await client.get(f"{SCHEMAS}/songs", headers=headers)).json()["version"] == 1


async def test_migrations_ignore_dataset_tables(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    await asyncio.to_thread(migrations.check, settings)


async def test_api_key_scopes_guard_datasets(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    read_key = (
        await client.post(
            "/api/v1/auth/api-keys", json={"name": "r", "scopes": ["read"]}, headers=headers
        )
    ).json()["key"]
    assert (await client.get(f"{SCHEMAS}/songs", headers=bearer(read_key))).status_code == 200
    refused = await client.post(SCHEMAS, json=SONGS | {"name": "more"}, headers=bearer(read_key))
    assert refused.status_code == 403
    assert refused.json()["code"] == "scope_required"
    limited = (
        await client.post(
            "/api/v1/auth/api-keys",
            json={"name": "l", "scopes": ["read", "write"], "datasets": ["other"]},
            headers=headers,
        )
    ).json()["key"]
    assert (await client.get(f"{SCHEMAS}/songs", headers=bearer(limited))).status_code == 404
    assert (await client.get(SCHEMAS, headers=bearer(limited))).json()["items"] == []


async def _restricted_key(
    client: httpx.AsyncClient, headers: dict[str, str], datasets: list[str]
) -> dict[str, str]:
    created = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "limited", "scopes": ["read"], "datasets": datasets},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return bearer(created.json()["key"])


async def test_a_restricted_key_lists_and_counts_only_its_datasets(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    limited = await _restricted_key(client, headers, ["other"])
    listed = await client.get(SCHEMAS, headers=limited)
    assert listed.status_code == 200
    assert (listed.json()["items"], listed.json()["total"]) == ([], 0)


async def test_a_restricted_key_pages_over_its_own_datasets(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for name in ("a1", "a2", "a3", "zz"):
        created = await client.post(SCHEMAS, json=SONGS | {"name": name}, headers=headers)
        assert created.status_code == 201, created.text
    limited = await _restricted_key(client, headers, ["zz", "a2"])
    first = (await client.get(SCHEMAS, params={"limit": 1}, headers=limited)).json()
    second = (await client.get(SCHEMAS, params={"limit": 1, "offset": 1}, headers=limited)).json()
    assert [item["name"] for item in first["items"]] == ["a2"]
    assert [item["name"] for item in second["items"]] == ["zz"]
    assert first["total"] == second["total"] == 2


async def test_an_admin_can_manage_another_users_dataset(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    owner_id = (await client.get("/api/v1/users/me", headers=headers)).json()["id"]
    await signed_up(client, "root@example.com")
    await promote_to_admin(settings, "root@example.com")
    admin = bearer((await login(client, "root@example.com"))["access_token"])
    assert (await client.get(f"{SCHEMAS}/songs", headers=admin)).status_code == 404
    seen = await client.get(f"{SCHEMAS}/songs", params={"owner": owner_id}, headers=admin)
    assert seen.status_code == 200
    changed = await client.patch(
        f"{SCHEMAS}/songs",
        params={"owner": owner_id},
        json={"description": "curated"},
        headers=admin,
    )
    assert changed.status_code == 200
    assert (await client.get(f"{SCHEMAS}/songs", headers=headers)).json()[
        "description"
    ] == "curated"


async def test_too_many_fields_is_422(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    fields = [{"name": "id", "type": "integer", "primary_key": True}] + [
        {"name": f"f{n}", "type": "string"} for n in range(settings.max_schema_fields)
    ]
    response = await client.post(SCHEMAS, json=SONGS | {"fields": fields}, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "too_many_fields"


async def test_concurrent_changes_and_a_drop_never_fail_or_desync(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    table = await _table_of(settings, "songs")

    def add(name: str) -> Any:
        change = {"op": "add_field", "field": {"name": name, "type": "string"}}
        return client.patch(f"{SCHEMAS}/songs", json={"changes": [change]}, headers=headers)

    responses = await asyncio.gather(
        add("a1"), add("a2"), client.delete(f"{SCHEMAS}/songs", headers=headers), add("a3")
    )
    statuses = [response.status_code for response in responses]
    assert all(status in (200, 204, 404) for status in statuses), statuses
    assert statuses.count(204) == 1
    assert table not in await _tables(settings)
    assert (await client.get(f"{SCHEMAS}/songs", headers=headers)).status_code == 404


async def test_concurrent_changes_each_get_their_own_version(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await client.post(SCHEMAS, json=SONGS, headers=headers)
    changes = [
        client.patch(
            f"{SCHEMAS}/songs",
            json={"changes": [{"op": "add_field", "field": {"name": f"c{n}", "type": "integer"}}]},
            headers=headers,
        )
        for n in range(4)
    ]
    assert [r.status_code for r in await asyncio.gather(*changes)] == [200] * 4
    versions = (await client.get(f"{SCHEMAS}/songs/versions", headers=headers)).json()
    assert [v["number"] for v in versions] == [1, 2, 3, 4, 5]
    columns = await _columns(settings, await _table_of(settings, "songs"))
    assert {"c0", "c1", "c2", "c3"} <= set(columns)


async def test_every_answer_describing_a_dataset_counts_its_rows(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await client.post(SCHEMAS, json=SONGS, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["row_count"] == 0
    loaded = await client.post(
        f"{SCHEMAS}/songs/rows",
        json=[{"id": 1, "title": "So What"}, {"id": 2, "title": "Blue in Green"}],
        headers=headers,
    )
    assert loaded.status_code == 201, loaded.text

    changed = await client.patch(
        f"{SCHEMAS}/songs", json={"description": "Still listening"}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    read = await client.get(f"{SCHEMAS}/songs", headers=headers)
    listed = await client.get(SCHEMAS, headers=headers)
    assert changed.json()["row_count"] == read.json()["row_count"] == 2
    assert listed.json()["items"][0]["row_count"] == 2
