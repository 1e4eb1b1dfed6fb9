"""The shape of POST /query answers: columns named as the database names the SQL the user
wrote, and date-times written the same way as the rows API writes them."""

from __future__ import annotations

import csv
import io

import httpx
import orjson
import pytest

from tests.accounts import bearer, signed_up
from tests.query_helpers import query, shop


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
