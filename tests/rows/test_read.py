"""Listing rows: filters, order, select, limit, keyset cursors, counts, access."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from tablehouse.config import Settings
from tests.support.accounts import bearer, login, promote_to_admin, signed_up
from tests.support.row_tables import SCHEMAS, define, insert_rows, layout_of, run_sql

ROWS = f"{SCHEMAS}/songs/rows"
SONGS: dict[str, Any] = {
    "name": "songs",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "title", "type": "string", "max_length": 40, "nullable": False},
        {"name": "artist", "type": "string"},
        {"name": "plays", "type": "integer", "nullable": False, "default": 0},
        {"name": "released", "type": "date"},
        {"name": "liked", "type": "boolean"},
        {"name": "tags", "type": "json"},
        {"name": "added_at", "type": "datetime"},
        {"name": "ref", "type": "uuid", "unique": True},
        {"name": "rating", "type": "float"},
    ],
}
REF = uuid.UUID("12345678-1234-5678-1234-567812345678")
START = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def _song(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "title": ["Blue", "blue moon", "100% Pure", "under_score", "Star*", "Moon"][n - 1],
        "artist": None if n == 6 else ["Ann", "bob", "Ann"][n % 3],
        "plays": [5, 0, 12, 5, 40, 7][n - 1],
        "released": date(2020 + n, 1, 1) if n != 4 else None,
        "liked": [True, False, None, True, False, True][n - 1],
        "tags": {"n": n} if n != 3 else None,
        "added_at": START + timedelta(hours=n),
        "ref": REF if n == 2 else uuid.uuid4(),
        "rating": n / 2 if n != 5 else None,
    }


@pytest.fixture
async def headers(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    auth = bearer((await signed_up(client, "reader@example.com"))["access_token"])
    await define(client, auth, SONGS)
    await insert_rows(settings, "songs", [_song(n) for n in range(1, 7)])
    return auth


async def _ids(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> list[int]:
    response = await client.get(f"{ROWS}?{query}", headers=headers)
    assert response.status_code == 200, (query, response.text)
    return [row["id"] for row in response.json()["rows"]]


async def test_rows_come_in_key_order_as_json(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(ROWS, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next"] is None
    assert body["count"] is None
    assert [row["id"] for row in body["rows"]] == [1, 2, 3, 4, 5, 6]
    assert body["rows"][1] == {
        "id": 2,
        "title": "blue moon",
        "artist": "Ann",
        "plays": 0,
        "released": "2022-01-01",
        "liked": False,
        "tags": {"n": 2},
        "added_at": "2024-01-01T14:00:00+00:00",
        "ref": str(REF),
        "rating": 1.0,
    }
    assert body["rows"][2]["tags"] is None
    assert body["rows"][3]["released"] is None


COMPARISONS = [
    ("plays=eq.5", [1, 4]),
    ("plays=neq.5", [2, 3, 5, 6]),
    ("plays=lt.5", [2]),
    ("plays=lte.5", [1, 2, 4]),
    ("plays=gt.10", [3, 5]),
    ("plays=gte.12", [3, 5]),
    ("released=lt.2023-01-01", [1, 2]),
    ("released=gte.2025-01-01", [5, 6]),
    ("added_at=gt.2024-01-01T15:00:00Z", [4, 5, 6]),
    ("added_at=lte.2024-01-01T16:00:00%2B01:00", [1, 2, 3]),
    ("rating=gt.1.5", [4, 6]),
    ("rating=lte.1", [1, 2]),
    (f"ref=eq.{REF}", [2]),
    (f"ref=neq.{REF.hex}", [1, 3, 4, 5, 6]),
    ("liked=eq.true", [1, 4, 6]),
    ("liked=neq.true", [2, 5]),
    ("title=eq.Moon", [6]),
    ("title=lt.A", [3]),
    ("artist=gte.b", [1, 4]),
    ("plays=gt.1&plays=lt.9", [1, 4, 6]),
    ("plays=gte.5&artist=eq.Ann", [3, 5]),
]


async def test_comparison_operators_on_several_types(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for query, expected in COMPARISONS:
        assert await _ids(client, headers, query) == expected, query


async def test_in_lists(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert await _ids(client, headers, "id=in.(1,3,99)") == [1, 3]
    assert await _ids(client, headers, "plays=in.(5)") == [1, 4]
    assert await _ids(client, headers, "released=in.(2021-01-01,2026-01-01)") == [1, 6]
    assert await _ids(client, headers, "id=in.()") == []
    # A comma inside a value: double-quote the item; a backslash escapes '"' and '\'.
    quoted = await client.get(
        ROWS, params={"title": 'in.("100% Pure",Moon,"a,b","x\\"y")'}, headers=headers
    )
    assert [row["id"] for row in quoted.json()["rows"]] == [3, 6]
    changed = await client.patch(f"{ROWS}/2", json={"title": 'say "a,b"'}, headers=headers)
    assert changed.status_code == 200, changed.text
    found = await client.get(ROWS, params={"title": 'in.("say \\"a,b\\"")'}, headers=headers)
    assert [row["id"] for row in found.json()["rows"]] == [2]


async def test_like_and_ilike(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    cases = [
        ("like", "*oon", [2, 6]),
        ("like", "B*", [1]),  # case-sensitive on every backend
        ("ilike", "b*", [1, 2]),
        ("ilike", "*MOON*", [2, 6]),
        ("like", "100%*", [3]),  # '%' is literal
        ("like", "1_0*", []),  # '_' is literal
        ("like", "under_score", [4]),
        ("like", "Star\\*", [5]),  # '\*' is a literal star
        ("like", "Star*", [5]),
        ("ilike", "*E", [1, 3, 4]),
    ]
    for op, pattern, expected in cases:
        response = await client.get(ROWS, params={"title": f"{op}.{pattern}"}, headers=headers)
        assert [r["id"] for r in response.json()["rows"]] == expected, (op, pattern)


async def test_is(client: httpx.AsyncClient, headers: dict[str, str], settings: Settings) -> None:
    assert await _ids(client, headers, "artist=is.null") == [6]
    assert await _ids(client, headers, "released=is.not_null") == [1, 2, 3, 5, 6]
    assert await _ids(client, headers, "liked=is.true") == [1, 4, 6]
    assert await _ids(client, headers, "liked=is.false") == [2, 5]
    assert await _ids(client, headers, "liked=is.null") == [3]
    # JSON fields: SQL NULL and the JSON value null both count as null.
    table = (await layout_of(settings, "songs")).table.name
    await run_sql(settings, f"UPDATE {table} SET tags = NULL WHERE id = 5")
    assert await _ids(client, headers, "tags=is.null") == [3, 5]
    assert await _ids(client, headers, "tags=is.not_null") == [1, 2, 4, 6]


async def test_order(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert await _ids(client, headers, "order=plays.desc") == [5, 3, 6, 1, 4, 2]
    assert await _ids(client, headers, "order=plays") == [2, 1, 4, 6, 3, 5]
    # Ties are broken by the key; nulls come last in both directions.
    assert await _ids(client, headers, "order=artist.asc,plays.desc") == [5, 3, 2, 1, 4, 6]
    assert await _ids(client, headers, "order=artist.desc,id.desc") == [4, 1, 5, 3, 2, 6]
    assert await _ids(client, headers, "order=released.desc") == [6, 5, 3, 2, 1, 4]
    assert await _ids(client, headers, "order=id.desc&plays=lt.10") == [6, 4, 2, 1]


async def test_select_and_limit(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(f"{ROWS}?select=title,plays&limit=2", headers=headers)
    body = response.json()
    assert body["rows"] == [{"title": "Blue", "plays": 5}, {"title": "blue moon", "plays": 0}]
    # The cursor carries the sort values even though they are not returned.
    rows, cursor = list(body["rows"]), body["next"]
    while cursor is not None:
        page = await client.get(
            ROWS, params={"select": "title", "limit": 2, "cursor": cursor}, headers=headers
        )
        assert page.status_code == 200, page.text
        rows += page.json()["rows"]
        cursor = page.json()["next"]
    assert [row["title"] for row in rows] == [_song(n)["title"] for n in range(1, 7)]
    for limit in (0, -1, 1001, "x"):
        refused = await client.get(f"{ROWS}?limit={limit}", headers=headers)
        assert refused.status_code == 422, limit
        assert refused.json()["detail"][0]["loc"] == ["query", "limit"]
    assert (await client.get(f"{ROWS}?limit=1000", headers=headers)).status_code == 200


async def test_default_limit_is_100(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await insert_rows(settings, "songs", [{"id": n, "title": "x"} for n in range(7, 151)])
    body = (await client.get(ROWS, headers=headers)).json()
    assert len(body["rows"]) == 100
    rest = (await client.get(ROWS, params={"cursor": body["next"]}, headers=headers)).json()
    assert [row["id"] for row in rest["rows"]] == list(range(101, 151))
    assert rest["next"] is None


def _big_row(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "title": f"t{n % 3}",
        "artist": None if n % 5 == 0 else f"a{n % 4}",
        "plays": n % 7,
        "rating": None if n % 11 == 0 else float(n % 2),
        "ref": uuid.UUID(int=n),
    }


async def _all_pages(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = params if cursor is None else params | {"cursor": cursor}
        response = await client.get(ROWS, params=query, headers=headers)
        assert response.status_code == 200, response.text
        rows += response.json()["rows"]
        cursor = response.json()["next"]
        if cursor is None:
            return rows


def _in_order(rows: list[dict[str, Any]], keys: list[tuple[str, bool]]) -> list[int]:
    """The ids of ``rows`` in the API's order: ``keys`` with nulls last, then the id."""
    ordered = sorted(rows, key=lambda row: row["id"])
    for name, descending in reversed(keys):  # stable sorts, last key first
        present = [row for row in ordered if row[name] is not None]
        ordered = sorted(present, key=lambda row: row[name], reverse=descending) + [
            row for row in ordered if row[name] is None
        ]
    return [row["id"] for row in ordered]


async def test_keyset_pagination_over_10000_rows_with_ties_returns_each_row_once(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    await run_sql(settings, f"DELETE FROM {(await layout_of(settings, 'songs')).table.name}")
    await insert_rows(settings, "songs", [_big_row(n) for n in range(1, 10_001)])
    everything = set(range(1, 10_001))
    listings: list[tuple[dict[str, Any], list[tuple[str, bool]]]] = [
        ({"order": "plays.desc", "limit": 1000}, [("plays", True)]),
        ({"order": "rating.desc,plays", "limit": 997}, [("rating", True), ("plays", False)]),
        ({"order": "title.asc,artist.desc", "limit": 750}, [("title", False), ("artist", True)]),
        ({"order": "artist", "plays": "gte.5", "limit": 333}, [("artist", False)]),
    ]
    for params, keys in listings:
        rows = await _all_pages(client, headers, params)
        ids = [row["id"] for row in rows]
        assert len(ids) == len(set(ids)), params
        if "plays" in params:
            assert set(ids) == {n for n in everything if n % 7 >= 5}, params
        else:
            assert set(ids) == everything, params
        assert ids == _in_order(rows, keys), params


async def test_a_cursor_only_serves_its_own_listing(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    first = (await client.get(f"{ROWS}?order=plays.desc&limit=2", headers=headers)).json()
    cursor = first["next"]
    again = await client.get(
        ROWS, params={"order": "plays.desc", "cursor": cursor}, headers=headers
    )
    assert again.status_code == 200
    for other in ({"order": "plays.asc"}, {"order": "plays.desc", "liked": "is.true"}, {}):
        refused = await client.get(ROWS, params=other | {"cursor": cursor}, headers=headers)
        assert refused.status_code == 400, other
        assert refused.json()["code"] == "invalid_cursor"
    for junk in ("abc", "!!!", "eyJ4IjoxfQ", cursor[:-3]):
        refused = await client.get(
            ROWS, params={"order": "plays.desc", "cursor": junk}, headers=headers
        )
        assert refused.status_code == 400, junk
        assert refused.json()["code"] == "invalid_cursor"


async def test_count(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings, backend: str
) -> None:
    exact = (await client.get(f"{ROWS}?count=exact&limit=1&plays=gte.5", headers=headers)).json()
    assert exact["count"] == 5
    assert len(exact["rows"]) == 1
    filtered = await client.get(f"{ROWS}?count=estimated&plays=gte.5", headers=headers)
    assert filtered.json()["count"] == 5  # with filters an estimate is not possible: exact
    if backend == "postgresql":
        await run_sql(settings, f"ANALYZE {(await layout_of(settings, 'songs')).table.name}")
    estimated = (await client.get(f"{ROWS}?count=estimated", headers=headers)).json()
    assert estimated["count"] == 6
    assert (await client.get(f"{ROWS}?count=all", headers=headers)).status_code == 422


async def test_invalid_parameters_are_422_naming_them(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(
        f"{ROWS}?nope=eq.1&plays=gt.ten&plays=between.1&title=5&liked=like.x"
        '&tags=eq.{}&artist=is.true&id=in.(1,2&title=in.("a"b)',
        headers=headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    problems = {(tuple(p["loc"]), p["type"]) for p in response.json()["detail"]}
    assert problems == {
        (("query", "nope"), "unknown_parameter"),
        (("query", "plays"), "invalid_value"),
        (("query", "plays"), "unknown_operator"),
        (("query", "title"), "malformed_filter"),
        (("query", "liked"), "bad_operator"),
        (("query", "tags"), "bad_operator"),
        (("query", "artist"), "bad_operator"),
        (("query", "id"), "malformed_filter"),
    }
    messages = " ".join(p["msg"] for p in response.json()["detail"])
    assert "plays: expected an integer, got 'ten'" in messages
    assert "unknown operator 'between'" in messages
    assert "fields: id, title, artist" in messages
    for query, loc in [
        ("order=plays.up", "order"),
        ("order=missing", "order"),
        ("order=tags", "order"),
        ("order=plays,plays.desc", "order"),
        ("select=title,missing", "select"),
        ("order=id&order=plays", "order"),
        ("released=eq.2024-13-01", "released"),
        ("ref=eq.not-a-uuid", "ref"),
        ("added_at=gt.yesterday", "added_at"),
    ]:
        refused = await client.get(f"{ROWS}?{query}", headers=headers)
        assert refused.status_code == 422, query
        assert refused.json()["detail"][0]["loc"] == ["query", loc], query


async def test_the_declared_filter_parameter_is_the_same_filter_as_field_equals(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """?filter=field.op.value (the form the OpenAPI document declares) and ?field=op.value
    select the same rows, mix in one request, and share cursors."""
    for query, expected in COMPARISONS:
        declared = "&".join(f"filter={part.replace('=', '.', 1)}" for part in query.split("&"))
        assert await _ids(client, headers, declared) == expected, declared
    mixed = await _ids(client, headers, "filter=plays.gte.5&artist=eq.Ann")
    assert mixed == [3, 5]
    quoted = await client.get(
        ROWS, params={"filter": 'title.in.("100% Pure",Moon)'}, headers=headers
    )
    assert [row["id"] for row in quoted.json()["rows"]] == [3, 6]
    first = await client.get(f"{ROWS}?plays=gte.5&order=plays&limit=2", headers=headers)
    following = await client.get(
        ROWS,
        params={"filter": "plays.gte.5", "order": "plays", "cursor": first.json()["next"]},
        headers=headers,
    )
    assert following.status_code == 200, following.text
    assert [row["id"] for row in following.json()["rows"]] == [6, 3, 5]


async def test_a_bad_declared_filter_is_422_saying_what_is_wrong(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(
        ROWS,
        params=[
            ("filter", "plays"),
            ("filter", "nope.eq.1"),
            ("filter", "plays.gt.ten"),
            ("filter", "liked.like.x"),
        ],
        headers=headers,
    )
    assert response.status_code == 422
    problems = [(p["loc"], p["type"], p["msg"]) for p in response.json()["detail"]]
    assert problems == [
        (
            ["query", "filter"],
            "malformed_filter",
            "expected field.operator.value, such as rating.eq.x",
        ),
        (
            ["query", "filter"],
            "unknown_field",
            "'nope' is not a field of this dataset; fields: "
            "id, title, artist, plays, released, liked, tags, added_at, ref, rating",
        ),
        (["query", "filter"], "invalid_value", "plays: expected an integer, got 'ten'"),
        (["query", "filter"], "bad_operator", "liked: like applies to string fields only"),
    ]


async def test_fields_named_like_parameters_are_filtered_with_a_prefix(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    tally = {
        "name": "tally",
        "fields": [
            {"name": "cursor", "type": "string", "primary_key": True},
            {"name": "count", "type": "integer"},
        ],
    }
    await define(client, headers, tally)
    await insert_rows(settings, "tally", [{"cursor": c, "count": n} for n, c in enumerate("abc")])
    response = await client.get(
        f"{SCHEMAS}/tally/rows?filter.count=gte.1&filter.cursor=neq.c&count=exact",
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"cursor": "b", "count": 1}]
    assert response.json()["count"] == 1
    ordered = await client.get(f"{SCHEMAS}/tally/rows?order=count.desc", headers=headers)
    assert [row["cursor"] for row in ordered.json()["rows"]] == ["c", "b", "a"]


async def test_access(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    stranger = bearer((await signed_up(client, "stranger@example.com"))["access_token"])
    hidden = await client.get(ROWS, headers=stranger)
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "schema_not_found"
    assert (await client.get(ROWS)).status_code == 401

    async def key(scopes: list[str], datasets: list[str] | None = None) -> dict[str, str]:
        body: dict[str, Any] = {"name": "k", "scopes": scopes}
        if datasets is not None:
            body["datasets"] = datasets
        created = await client.post("/api/v1/auth/api-keys", json=body, headers=headers)
        assert created.status_code == 201, created.text
        return bearer(created.json()["key"])

    assert (await client.get(ROWS, headers=await key(["read"]))).status_code == 200
    refused = await client.get(ROWS, headers=await key(["write", "query"]))
    assert refused.status_code == 403
    assert refused.json()["code"] == "scope_required"
    elsewhere = await client.get(ROWS, headers=await key(["read"], ["other"]))
    assert elsewhere.status_code == 404

    owner_id = (await client.get("/api/v1/users/me", headers=headers)).json()["id"]
    await signed_up(client, "root@example.com")
    await promote_to_admin(settings, "root@example.com")
    admin = bearer((await login(client, "root@example.com"))["access_token"])
    assert (await client.get(ROWS, headers=admin)).status_code == 404
    seen = await client.get(ROWS, params={"owner": owner_id, "limit": 2}, headers=admin)
    assert seen.status_code == 200
    assert len(seen.json()["rows"]) == 2
