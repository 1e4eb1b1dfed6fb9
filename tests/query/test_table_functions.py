"""Table-valued JSON functions and common table expressions run on both backends: what the
guard lets through, the database layer must not refuse (docs/api.md lists json_each)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.accounts import bearer, signed_up
from tests.support.query_helpers import rows_of
from tests.support.row_tables import define

DOCS: dict[str, Any] = {
    "name": "docs",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "tags", "type": "json"},
    ],
}


@pytest.fixture
async def ada(client: httpx.AsyncClient) -> dict[str, str]:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await define(client, headers, DOCS)
    rows = [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": ["c"]}]
    loaded = await client.post("/api/v1/schemas/docs/rows", json=rows, headers=headers)
    assert loaded.status_code == 201, loaded.text
    return headers


BOTH = [
    ("WITH c AS (SELECT 1 AS x) SELECT x FROM c", [[1]]),
    ("WITH c AS (SELECT 1) SELECT * FROM c", [[1]]),
    ("WITH c(x) AS (SELECT 2) SELECT x FROM c", [[2]]),
    ("WITH c AS (SELECT id FROM docs) SELECT count(*) FROM c, c AS d", [[4]]),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
        "SELECT n FROM r ORDER BY n",
        [[1], [2], [3]],
    ),
    (
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 2) "
        "SELECT n FROM r ORDER BY n",
        [[1], [2]],
    ),
]


@pytest.mark.parametrize(("sql", "expected"), BOTH)
async def test_common_table_expressions_run_with_or_without_column_names(
    client: httpx.AsyncClient, ada: dict[str, str], sql: str, expected: list[list[Any]]
) -> None:
    assert await rows_of(client, ada, sql) == expected


SQLITE = [
    ("SELECT value FROM json_each('[1,2]') ORDER BY value", [[1], [2]]),
    (
        "SELECT d.id, j.value FROM docs d, json_each(d.tags) j ORDER BY d.id, j.value",
        [[1, "a"], [1, "b"], [2, "c"]],
    ),
    ("SELECT key, value FROM json_tree('{\"a\":1}') WHERE key = 'a'", [["a", 1]]),
    ("SELECT count(*) FROM JSON_EACH('[1,2,3]')", [[3]]),
    ("WITH C AS (SELECT value FROM json_each('[1,2]')) SELECT count(*) FROM c, C AS d", [[4]]),
    ("WITH c AS (SELECT value AS v FROM json_each('[3]')) SELECT v FROM c", [[3]]),
]


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(("sql", "expected"), SQLITE)
async def test_json_each_and_json_tree_read_as_tables_on_sqlite(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str, sql: str, expected: Any
) -> None:
    assert await rows_of(client, ada, sql) == expected


POSTGRESQL = [
    ("SELECT value FROM json_each('{\"a\":1}')", [[1]]),
    (
        "SELECT d.id, j.value FROM docs d, jsonb_array_elements_text(d.tags) j(value) "
        "ORDER BY d.id, j.value",
        [[1, "a"], [1, "b"], [2, "c"]],
    ),
]


@pytest.mark.backends("postgresql")
@pytest.mark.parametrize(("sql", "expected"), POSTGRESQL)
async def test_json_set_returning_functions_read_as_tables_on_postgresql(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str, sql: str, expected: Any
) -> None:
    assert await rows_of(client, ada, sql) == expected
