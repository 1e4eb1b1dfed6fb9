"""The shape of POST /query answers: columns named as the database names the SQL the user
wrote, and date-times written the same way as the rows API writes them."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import orjson
import pytest

from tests.support.accounts import bearer, signed_up
from tests.support.query_helpers import query, shop
from tests.support.row_tables import define


@pytest.fixture
async def ada(client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await signed_up(client, "ada@example.com")
    headers = bearer(tokens["access_token"])
    await shop(client, headers)
    return headers


async def column_names(
    client: httpx.AsyncClient, headers: dict[str, str], sql: str, accept: str = "application/json"
) -> list[str]:
    response = await client.post(
        "/api/v1/query", json={"sql": sql}, headers={**headers, "Accept": accept}
    )
    assert response.status_code == 200, response.text
    if accept == "text/csv":
        return next(csv.reader(io.StringIO(response.text)))
    if accept == "application/x-ndjson":
        return list(orjson.loads(response.text.splitlines()[0]))
    return [column["name"] for column in response.json()["columns"]]


# What each database itself names these columns (sqlite3 and asyncpg, given the same text).
WRITTEN = (
    "SELECT count(*), max(total), Min( total ) , customer_id, o.id FROM orders o GROUP BY 4, 5"
)
NAMED_AS_WRITTEN = {
    "sqlite": ["count(*)", "max(total)", "Min( total )", "customer_id", "id"],
    "postgresql": ["count", "max", "min", "customer_id", "id"],
}


@pytest.mark.parametrize("accept", ["application/json", "text/csv", "application/x-ndjson"])
async def test_aggregate_columns_are_named_as_the_database_names_the_sql_written(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str, accept: str
) -> None:
    assert await column_names(client, ada, WRITTEN, accept) == NAMED_AS_WRITTEN[backend]


@pytest.mark.backends("postgresql")
async def test_postgresql_names_a_function_sqlglot_rewrites_by_the_function_written(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    names = await column_names(
        client,
        ada,
        "SELECT now(), substr(name, 1, 2), strpos(name, 'a'), char_length(name), mod(id, 2), "
        "id + 1, 1::integer, trim(leading 'A' from name), "
        "CASE WHEN id > 1 THEN 'x' ELSE city END, CASE WHEN id > 1 THEN 1 END, "
        "(SELECT max(total) FROM orders) FROM customers",
    )
    assert names == [
        "now",
        "substr",
        "strpos",
        "char_length",
        "mod",
        "?column?",
        "int4",
        "ltrim",
        "city",
        "case",
        "max",
    ]


@pytest.mark.backends("sqlite")
async def test_sqlite_names_an_expression_by_its_text_comments_and_spaces_kept(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    names = await column_names(
        client,
        ada,
        "SELECT upper(name) /* loud */ , id+1, (id), true, "
        "(SELECT max(total) FROM orders) FROM customers",
    )
    # Never the rendering (UPPER(name), TRUE) nor the physical table of the subquery.
    assert names == [
        "upper(name) /* loud */",
        "id+1",
        "id",
        "true",
        "(SELECT max(total) FROM orders)",
    ]


async def test_columns_of_a_cte_keep_their_written_names_through_star_and_by_name(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str
) -> None:
    inner = "count(*)" if backend == "sqlite" else "count"
    response = await query(
        client, ada, f'WITH c AS (SELECT count(*) FROM orders) SELECT *, "{inner}" AS again FROM c'
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [column["name"] for column in body["columns"]] == [inner, "again"]
    assert body["rows"] == [[5, 5]]


EVENTS: dict[str, Any] = {
    "name": "events",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "at", "type": "datetime"},
        {"name": "day", "type": "date"},
        {"name": "note", "type": "string"},
    ],
}
EVENT_ROWS = [
    {"id": 1, "at": "2026-01-01T00:00:37Z", "day": "2026-01-01", "note": "2026-01-01 00:00:37"},
    {"id": 2, "at": "2026-01-02T10:00:00.250+02:00", "day": "2026-01-02", "note": "x"},
    {"id": 3, "at": None, "day": None, "note": None},
]


@pytest.fixture
async def events(client: httpx.AsyncClient, ada: dict[str, str]) -> list[dict[str, Any]]:
    """The events as the rows API answers them, by id."""
    await define(client, ada, EVENTS)
    loaded = await client.post("/api/v1/schemas/events/rows", json=EVENT_ROWS, headers=ada)
    assert loaded.status_code == 201, loaded.text
    listed = await client.get("/api/v1/schemas/events/rows?order=id", headers=ada)
    assert listed.status_code == 200, listed.text
    rows: list[dict[str, Any]] = listed.json()["rows"]
    return rows


async def test_rows_api_writes_date_times_in_iso_8601_with_their_offset(
    events: list[dict[str, Any]],
) -> None:
    assert [(row["at"], row["day"]) for row in events] == [
        ("2026-01-01T00:00:37+00:00", "2026-01-01"),
        ("2026-01-02T08:00:00.250000+00:00", "2026-01-02"),
        (None, None),
    ]


async def test_query_answers_date_times_as_the_rows_api_does(
    client: httpx.AsyncClient, ada: dict[str, str], events: list[dict[str, Any]]
) -> None:
    response = await query(client, ada, "SELECT id, at, day, note FROM events ORDER BY id")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "at", "type": "datetime"},
        {"name": "day", "type": "date"},
        {"name": "note", "type": "string"},
    ]
    # A string that looks like a stored date-time stays the string it is.
    assert body["rows"] == [[row["id"], row["at"], row["day"], row["note"]] for row in events]


async def test_date_times_through_aggregates_ctes_and_stars_keep_the_format(
    client: httpx.AsyncClient, ada: dict[str, str], events: list[dict[str, Any]]
) -> None:
    response = await query(
        client,
        ada,
        "WITH e AS (SELECT * FROM events WHERE at IS NOT NULL) "
        "SELECT max(at) AS latest, min(e.at), (SELECT max(day) FROM events) AS last_day "
        "FROM e",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [column["type"] for column in body["columns"]] == ["datetime", "datetime", "date"]
    assert body["rows"] == [[events[1]["at"], events[0]["at"], events[1]["day"]]]


async def test_date_times_compare_and_sort_as_stored(
    client: httpx.AsyncClient, ada: dict[str, str], events: list[dict[str, Any]]
) -> None:
    response = await query(
        client,
        ada,
        "SELECT id FROM events WHERE at >= :since ORDER BY at DESC",
        params={"since": "2026-01-01 00:00:38"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [[2]]


@pytest.mark.parametrize("accept", ["text/csv", "application/x-ndjson"])
async def test_streamed_answers_write_date_times_as_the_rows_api_does(
    client: httpx.AsyncClient, ada: dict[str, str], events: list[dict[str, Any]], accept: str
) -> None:
    response = await client.post(
        "/api/v1/query",
        json={"sql": "SELECT at, day FROM events ORDER BY id"},
        headers={**ada, "Accept": accept},
    )
    assert response.status_code == 200, response.text
    if accept == "text/csv":
        written = list(csv.reader(io.StringIO(response.text)))[1:]
        assert written == [[row["at"] or "", row["day"] or ""] for row in events]
    else:
        lines = [orjson.loads(line) for line in response.text.splitlines()]
        assert lines == [{"at": row["at"], "day": row["day"]} for row in events]
