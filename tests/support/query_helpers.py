"""Helpers for query tests: two small datasets with known rows, a way to run SQL, and a
way to run it past the guard (what the database itself refuses)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text

from tablehouse.api.runtime import Runtime
from tablehouse.config import Settings
from tablehouse.core.database import Backend
from tablehouse.query.backends.execution import Statement, open_cursor
from tablehouse.query.backends.postgres import PostgresExecutor
from tablehouse.query.backends.sqlite import SqliteExecutor
from tests.support.accounts import bearer, signed_up
from tests.support.row_tables import define, insert_rows

QUERY = "/api/v1/query"

CUSTOMERS: dict[str, Any] = {
    "name": "customers",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "name", "type": "string", "nullable": False},
        {"name": "city", "type": "string"},
    ],
}
ORDERS: dict[str, Any] = {
    "name": "orders",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "customer_id", "type": "integer", "nullable": False},
        {"name": "total", "type": "float", "nullable": False},
        {"name": "placed_on", "type": "date", "nullable": False},
    ],
}
CUSTOMER_ROWS = [
    {"id": 1, "name": "Ada", "city": "London"},
    {"id": 2, "name": "Grace", "city": "New York"},
    {"id": 3, "name": "Edsger", "city": "Austin"},
]
ORDER_ROWS = [
    {"id": 10, "customer_id": 1, "total": 25.0, "placed_on": "2024-01-05"},
    {"id": 11, "customer_id": 1, "total": 75.0, "placed_on": "2024-02-10"},
    {"id": 12, "customer_id": 2, "total": 40.0, "placed_on": "2024-02-11"},
    {"id": 13, "customer_id": 2, "total": 10.0, "placed_on": "2024-03-01"},
    {"id": 14, "customer_id": 3, "total": 99.5, "placed_on": "2024-03-02"},
]


async def shop(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Define customers and orders and load their rows through the API."""
    await define(client, headers, CUSTOMERS)
    await define(client, headers, ORDERS)
    for name, rows in (("customers", CUSTOMER_ROWS), ("orders", ORDER_ROWS)):
        loaded = await client.post(f"/api/v1/schemas/{name}/rows", json=rows, headers=headers)
        assert loaded.status_code == 201, loaded.text


async def numbers(
    client: httpx.AsyncClient, settings: Settings, headers: dict[str, str], count: int
) -> None:
    """A dataset ``numbers`` holding 1..count, written straight into its table."""
    await define(
        client,
        headers,
        {"name": "numbers", "fields": [{"name": "n", "type": "integer", "primary_key": True}]},
    )
    await insert_rows(settings, "numbers", [{"n": n} for n in range(1, count + 1)])


async def query(
    client: httpx.AsyncClient, headers: dict[str, str], sql: str, **extra: Any
) -> httpx.Response:
    return await client.post(QUERY, json={"sql": sql, **extra}, headers=headers)


async def rows_of(
    client: httpx.AsyncClient, headers: dict[str, str], sql: str, **extra: Any
) -> list[list[Any]]:
    response = await query(client, headers, sql, **extra)
    assert response.status_code == 200, response.text
    rows: list[list[Any]] = response.json()["rows"]
    return rows


async def dataset(runtime: Runtime, name: str) -> tuple[str, uuid.UUID]:
    """The table and owner of the (only) dataset called ``name``."""
    async with runtime.engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT table_name, owner_id FROM schemas WHERE name = :name"),
                {"name": name},
            )
        ).one()
    return str(row.table_name), uuid.UUID(str(row.owner_id))


async def customers_table(client: httpx.AsyncClient, runtime: Runtime) -> str:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await shop(client, headers)
    return (await dataset(runtime, "customers"))[0]


async def run_unguarded(
    runtime: Runtime, sql: str, tables: dict[str, str], owner_id: uuid.UUID | None = None
) -> list[list[object]]:
    """Run ``sql`` as a query would run, without the guard in front. It runs as the owner of
    the first of ``tables`` (the role a query over that dataset runs as), or as ``owner_id``."""
    engine = runtime.query_engine
    executor = (
        PostgresExecutor(runtime.settings.query_database_role)
        if runtime.backend == Backend.POSTGRESQL
        else SqliteExecutor()
    )
    if owner_id is None and tables:
        owner_id = await owner_of_table(runtime, next(iter(tables)))
    statement = Statement(sql=sql, parameters=(), values={}, tables=tables, owner_id=owner_id)
    async with (
        engine.connect() as connection,
        open_cursor(connection, executor, statement, timeout_ms=2000) as cursor,
    ):
        return [list(row) for row in await cursor.fetch(100)]


async def owner_of_table(runtime: Runtime, table: str) -> uuid.UUID:
    async with runtime.engine.connect() as connection:
        owner = await connection.scalar(
            text("SELECT owner_id FROM schemas WHERE table_name = :table"), {"table": table}
        )
    return uuid.UUID(str(owner))
