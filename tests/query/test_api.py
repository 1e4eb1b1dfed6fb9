"""POST /query: answers over the caller's own datasets, on both backends."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx
import orjson
import pytest

from tablehouse.config import Settings
from tests.support.accounts import bearer, signed_up
from tests.support.query_helpers import QUERY, numbers, query, rows_of, shop


@pytest.fixture
async def ada(client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await signed_up(client, "ada@example.com")
    headers = bearer(tokens["access_token"])
    await shop(client, headers)
    return headers


async def test_answer_has_columns_rows_count_and_stats(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await query(client, ada, "SELECT id, name, city FROM customers ORDER BY id")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    uuid.UUID(body["query_id"])
    assert body["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "name", "type": "string"},
        {"name": "city", "type": "string"},
    ]
    assert body["rows"] == [[1, "Ada", "London"], [2, "Grace", "New York"], [3, "Edsger", "Austin"]]
    assert body["row_count"] == 3
    assert body["truncated"] is False
    stats = body["stats"]
    assert stats["execution_time_ms"] > 0
    assert stats["rows_read"] == 3
    assert stats["bytes_read"] == sum(len(orjson.dumps(row)) for row in body["rows"])


async def test_join_aggregate_and_having(client: httpx.AsyncClient, ada: dict[str, str]) -> None:
    rows = await rows_of(
        client,
        ada,
        "SELECT c.name, count(*) AS orders, sum(o.total) AS spent "
        "FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.name HAVING sum(o.total) > 50 ORDER BY spent DESC",
    )
    assert rows == [["Ada", 2, 100.0], ["Edsger", 1, 99.5]]


async def test_common_table_expression_and_window_function(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    rows = await rows_of(
        client,
        ada,
        "WITH ranked AS ("
        "  SELECT customer_id, total,"
        "         row_number() OVER (PARTITION BY customer_id ORDER BY total DESC) AS place,"
        "         sum(total) OVER (PARTITION BY customer_id) AS customer_total"
        "  FROM orders"
        ") SELECT customer_id, total, customer_total FROM ranked WHERE place = 1 "
        "ORDER BY customer_id",
    )
    assert rows == [[1, 75.0, 100.0], [2, 40.0, 50.0], [3, 99.5, 99.5]]


async def test_set_operations_and_subqueries(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    rows = await rows_of(
        client,
        ada,
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE total > 50) "
        "UNION SELECT name FROM customers WHERE city = 'London' ORDER BY name",
    )
    assert rows == [["Ada"], ["Edsger"]]


async def test_dataset_name_qualifies_its_columns(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    rows = await rows_of(client, ada, "SELECT customers.name FROM customers WHERE customers.id = 2")
    assert rows == [["Grace"]]


async def test_named_parameters_are_bound_with_their_types(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    rows = await rows_of(
        client,
        ada,
        "SELECT id FROM orders WHERE placed_on >= :since AND total > :least "
        "AND customer_id = :who ORDER BY id",
        params={"since": "2024-02-01", "least": 20, "who": 1},
    )
    assert rows == [[11]]


async def test_parameter_value_is_never_sql(client: httpx.AsyncClient, ada: dict[str, str]) -> None:
    rows = await rows_of(
        client,
        ada,
        "SELECT count(*) FROM customers WHERE name = :name",
        params={"name": "x' OR '1'='1"},
    )
    assert rows == [[0]]


async def test_missing_and_unknown_parameters_are_named(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    missing = await query(client, ada, "SELECT id FROM orders WHERE id = :id")
    unknown = await query(client, ada, "SELECT 1", params={"id": 1})

    assert missing.status_code == 400
    assert missing.json()["code"] == "missing_parameter"
    assert ":id" in missing.json()["detail"]
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "unknown_parameter"


async def test_parameter_of_the_wrong_kind_is_a_clear_400(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str
) -> None:
    response = await query(
        client, ada, "SELECT id FROM orders WHERE placed_on > :since", params={"since": "soon"}
    )
    if backend == "sqlite":  # SQLite compares the text as it is: no match, no error
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == []
        return
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_parameter"
    assert ":since" in response.json()["detail"]


async def test_database_error_is_a_400_that_names_the_dataset_not_its_table(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await query(client, ada, "SELECT nonexistent FROM customers")

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "query_failed"
    assert "nonexistent" in response.json()["detail"]
    assert "ds_" not in response.json()["detail"]


async def test_division_by_zero_is_reported_not_a_500(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str
) -> None:
    response = await query(client, ada, "SELECT 1 / (id - id) FROM customers")
    if backend == "sqlite":  # SQLite answers NULL
        assert response.json()["rows"] == [[None], [None], [None]]
        return
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "query_failed"


async def test_limit_cuts_the_answer_and_says_so(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    cut = await query(client, ada, "SELECT id FROM orders ORDER BY id", limit=2)
    exact = await query(client, ada, "SELECT id FROM orders ORDER BY id", limit=5)

    assert cut.json()["rows"] == [[10], [11]]
    assert cut.json()["row_count"] == 2
    assert cut.json()["truncated"] is True
    assert exact.json()["row_count"] == 5
    assert exact.json()["truncated"] is False


async def test_limit_and_timeout_may_not_exceed_the_settings(
    client: httpx.AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    response = await query(
        client,
        ada,
        "SELECT 1",
        limit=settings.query_max_rows + 1,
        timeout_ms=settings.query_timeout_ms + 1,
    )

    assert response.status_code == 422
    assert [problem["loc"] for problem in response.json()["detail"]] == [
        ["body", "limit"],
        ["body", "timeout_ms"],
    ]


async def test_unknown_dataset_is_404_naming_it(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await query(client, ada, "SELECT * FROM customers JOIN invoices ON true")

    assert response.status_code == 404
    assert response.json()["code"] == "schema_not_found"
    assert "'invoices'" in response.json()["detail"]


async def test_another_users_dataset_is_404_even_with_the_same_name(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    grace = bearer((await signed_up(client, "grace@example.com"))["access_token"])

    response = await query(client, grace, "SELECT * FROM customers")

    assert response.status_code == 404
    assert response.json()["code"] == "schema_not_found"


async def test_dataset_names_match_ignoring_case_like_sql(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    rows = await rows_of(client, ada, "SELECT count(*) FROM Customers")
    assert rows == [[3]]


async def test_syntax_error_is_400_with_its_position(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await query(client, ada, "SELECT id\nFROM customers WHERE (")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "syntax_error"
    assert body["position"]["line"] == 2


async def test_csv_streams_a_header_and_every_row(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.post(
        QUERY,
        json={"sql": "SELECT id, name, city FROM customers ORDER BY id"},
        headers={**ada, "Accept": "text/csv"},
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    uuid.UUID(response.headers["x-query-id"])
    assert list(csv.reader(io.StringIO(response.text))) == [
        ["id", "name", "city"],
        ["1", "Ada", "London"],
        ["2", "Grace", "New York"],
        ["3", "Edsger", "Austin"],
    ]


async def test_ndjson_streams_one_object_per_row_up_to_the_limit(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await numbers(client, settings, headers, 1200)

    response = await client.post(
        QUERY,
        json={"sql": "SELECT n, n * 2 AS twice FROM numbers ORDER BY n", "limit": 1100},
        headers={**headers, "Accept": "application/x-ndjson"},
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 1100
    assert lines[0] == {"n": 1, "twice": 2}
    assert lines[-1] == {"n": 1100, "twice": 2200}


async def test_stream_is_refused_before_it_starts(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.post(
        QUERY, json={"sql": "DELETE FROM customers"}, headers={**ada, "Accept": "text/csv"}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "not_read_only"


async def test_csv_of_an_empty_result_is_its_header(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.post(
        QUERY,
        json={"sql": "SELECT id, name FROM customers WHERE id < 0"},
        headers={**ada, "Accept": "text/csv"},
    )
    assert response.text.splitlines() == ["id,name"]


async def test_values_of_every_field_type_come_back_as_json(
    client: httpx.AsyncClient, backend: str
) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    fields: list[dict[str, Any]] = [
        {"name": "id", "type": "uuid", "primary_key": True},
        {"name": "happened", "type": "datetime"},
        {"name": "day", "type": "date"},
        {"name": "ok", "type": "boolean"},
        {"name": "extra", "type": "json"},
        {"name": "ratio", "type": "float"},
    ]
    created = await client.post(
        "/api/v1/schemas", json={"name": "things", "fields": fields}, headers=headers
    )
    assert created.status_code == 201, created.text
    row = {
        "id": "12345678-1234-5678-1234-567812345678",
        "happened": "2024-05-01T10:00:00Z",
        "day": "2024-05-01",
        "ok": True,
        "extra": {"a": [1, 2]},
        "ratio": 0.5,
    }
    loaded = await client.post("/api/v1/schemas/things/rows", json=row, headers=headers)
    assert loaded.status_code == 201, loaded.text

    response = await query(
        client, headers, "SELECT id, happened, day, ok, extra, ratio FROM things"
    )
    mean = await rows_of(client, headers, "SELECT avg(ratio) FROM things")

    assert response.status_code == 200, response.text
    (values,) = response.json()["rows"]
    assert uuid.UUID(values[0]) == uuid.UUID(str(row["id"]))
    assert values[2] == "2024-05-01"
    assert values[5] == 0.5
    assert mean == [[0.5]]
    if backend == "postgresql":
        assert values[1] == "2024-05-01T10:00:00+00:00"
        assert values[3] is True
        assert values[4] == {"a": [1, 2]}
        types = [column["type"] for column in response.json()["columns"]]
        assert types == ["uuid", "datetime", "date", "boolean", "json", "float"]


async def test_changed_dataset_is_queried_as_it_is_now(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    """Statements are prepared once per connection and dataset version: a change to the
    dataset (a new field) is seen by the very next query of the same text."""
    sql = "SELECT * FROM customers WHERE id = :id"
    before = await query(client, ada, sql, params={"id": 1})
    changed = await client.patch(
        "/api/v1/schemas/customers",
        json={"changes": [{"op": "add_field", "field": {"name": "vip", "type": "boolean"}}]},
        headers=ada,
    )
    assert changed.status_code == 200, changed.text

    after = await query(client, ada, sql, params={"id": 1})

    assert [column["name"] for column in before.json()["columns"]] == ["id", "name", "city"]
    assert after.status_code == 200, after.text
    assert [column["name"] for column in after.json()["columns"]] == ["id", "name", "city", "vip"]
    assert after.json()["rows"] == [[1, "Ada", "London", None]]


async def test_dataset_made_anew_under_the_same_name_is_queried(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    sql = "SELECT count(*) FROM customers"
    assert await rows_of(client, ada, sql) == [[3]]
    dropped = await client.delete("/api/v1/schemas/customers", headers=ada)
    assert dropped.status_code == 204
    gone = await query(client, ada, sql)
    await client.post(
        "/api/v1/schemas",
        json={
            "name": "customers",
            "fields": [{"name": "id", "type": "integer", "primary_key": True}],
        },
        headers=ada,
    )

    assert gone.status_code == 404
    assert await rows_of(client, ada, sql) == [[0]]


PROGRAM_LIMITS = [
    ("SELECT chr(0)", "null character not permitted"),
    ("SELECT chr(55296)", "not valid for encoding"),
    ("SELECT '{{{{{{{1}}}}}}}'::int[]", "number of array dimensions (7)"),
    ("SELECT array[[[[[[[1]]]]]]]", "number of array dimensions (7)"),
    ("SELECT " + ", ".join(f"{n} AS c{n}" for n in range(2000)), "at most 1664 entries"),
    # Nested past PostgreSQL's stack in one literal's worth of tokens: a `1 + 1 + ...` chain
    # that deep is refused by QUERY_MAX_SQL_TOKENS before any database sees it.
    (
        "SELECT length((repeat('[', 200000) || repeat(']', 200000))::jsonb::text)",
        "stack depth limit exceeded",
    ),
]


@pytest.mark.backends("postgresql")
@pytest.mark.parametrize(("sql", "says"), PROGRAM_LIMITS, ids=[says for _, says in PROGRAM_LIMITS])
async def test_postgresql_program_limit_is_a_400_saying_which(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str, sql: str, says: str
) -> None:
    for accept in ("application/json", "text/csv", "application/x-ndjson"):
        response = await client.post(QUERY, json={"sql": sql}, headers={**ada, "Accept": accept})

        assert response.status_code == 400, response.text
        assert response.json()["code"] == "database_limit_exceeded"
        assert says in response.json()["detail"]


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + ", ".join(f"{n} AS c{n}" for n in range(2001)),
        "SELECT " + " + ".join(["1"] * 1500),
        "SELECT char(55296)",
    ],
    ids=["2001 columns", "1500 terms", "a lone surrogate"],
)
async def test_sqlite_limits_are_a_400(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str, sql: str
) -> None:
    response = await query(client, ada, sql)

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "query_failed"


BIG = 1180591620717411303424  # 2 ** 70
HUGE_IN_JSON = 123456789012345678901234567890


@pytest.mark.backends("postgresql")
async def test_numbers_past_64_bits_come_back_exactly_in_every_format(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str
) -> None:
    sql = (
        "SELECT 2::numeric ^ 70 AS big, -(2::numeric ^ 70) AS negative, "
        f"'{{\"n\": {HUGE_IN_JSON}}}'::jsonb AS doc, 1e400::numeric AS vast"
    )

    answer = await query(client, ada, sql)
    ndjson = await client.post(
        QUERY, json={"sql": sql}, headers={**ada, "Accept": "application/x-ndjson"}
    )
    csv_text = await client.post(QUERY, json={"sql": sql}, headers={**ada, "Accept": "text/csv"})

    assert answer.status_code == 200, answer.text
    # Python's json keeps integers of any size, so the exact digits show.
    assert answer.json()["rows"] == [[BIG, -BIG, {"n": HUGE_IN_JSON}, 10**400]]
    assert ndjson.json() == {
        "big": BIG,
        "negative": -BIG,
        "doc": {"n": HUGE_IN_JSON},
        "vast": 10**400,
    }
    assert list(csv.reader(io.StringIO(csv_text.text)))[1] == [
        str(BIG),
        str(-BIG),
        f'{{"n":{HUGE_IN_JSON}}}',
        "1" + "0" * 400,
    ]


@pytest.mark.backends("postgresql")
async def test_deeply_nested_json_values_are_answered_or_refused_with_a_400(
    client: httpx.AsyncClient, ada: dict[str, str], backend: str
) -> None:
    """300 levels is deeper than orjson writes; 3,000 deeper than Python reads."""
    deep = await query(client, ada, "SELECT (repeat('[', 300) || repeat(']', 300))::jsonb AS v")
    deeper = await query(client, ada, "SELECT (repeat('[', 3000) || repeat(']', 3000))::jsonb")

    assert deep.status_code == 200, deep.text
    assert '"rows":[[' + "[" * 300 + "]" * 300 + "]]" in deep.text
    assert deeper.status_code == 400, deeper.text
    assert deeper.json()["code"] == "value_too_deep"
