"""Layer 3: what the database itself refuses to the query engine, when a statement gets
past the guard. These run statements straight on the executor, skipping the guard."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tablehouse.api.runtime import Runtime
from tablehouse.core.query_roles import owner_role
from tablehouse.errors import BadRequest
from tablehouse.query import guard
from tests.support.accounts import bearer, signed_up
from tests.support.databases import connected
from tests.support.query_calls import (
    ALLOWED_CALLS_BOTH,
    ALLOWED_CALLS_POSTGRES,
    ALLOWED_CALLS_SQLITE,
)
from tests.support.query_helpers import customers_table, owner_of_table, run_unguarded
from tests.support.row_tables import define, insert_rows
from tests.support.serving import runtime_of


async def test_the_callers_own_table_can_be_read(client: httpx.AsyncClient, app: FastAPI) -> None:
    runtime = runtime_of(app)
    table = await customers_table(client, runtime)

    rows = await run_unguarded(runtime, f"SELECT count(*) FROM {table}", {table: "customers"})

    assert rows == [[3]]


UNREACHABLE = [
    "SELECT email FROM users",
    "SELECT count(*) FROM users",  # reads no column: SQLite's authorizer sees the table only
    "SELECT * FROM auth_sessions",
    "SELECT * FROM refresh_token_history",
    "SELECT * FROM one_time_tokens",
    "SELECT * FROM api_keys",
    "SELECT * FROM schemas",
]


@pytest.mark.parametrize("sql", UNREACHABLE)
async def test_control_plane_cannot_be_read(
    client: httpx.AsyncClient, app: FastAPI, sql: str
) -> None:
    runtime = runtime_of(app)
    table = await customers_table(client, runtime)

    with pytest.raises(BadRequest) as refused:
        await run_unguarded(runtime, sql, {table: "customers"})

    assert refused.value.code == "not_allowed"


async def test_another_dataset_table_cannot_be_read_unless_it_was_allowed(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    runtime = runtime_of(app)
    customers = await customers_table(client, runtime)
    async with runtime.engine.connect() as connection:
        orders = await connection.scalar(
            text("SELECT table_name FROM schemas WHERE name = 'orders'")
        )

    statement = f"SELECT count(*) FROM {orders}"
    if backend == "postgresql":
        # The owner's role may read each of the owner's tables; which of them a statement
        # (or an API key restricted to some datasets) may name is the guard's to decide.
        assert await run_unguarded(runtime, statement, {customers: "customers"}) == [[5]]
        return
    with pytest.raises(BadRequest) as refused:
        await run_unguarded(runtime, statement, {customers: "customers"})
    assert refused.value.code == "not_allowed"


async def test_writes_fail_in_the_database_too(client: httpx.AsyncClient, app: FastAPI) -> None:
    runtime = runtime_of(app)
    table = await customers_table(client, runtime)

    for sql in (
        f"DELETE FROM {table}",
        f"INSERT INTO {table} (id, name) VALUES (99, 'Mallory')",
        f"DROP TABLE {table}",
        "CREATE TABLE stolen (x integer)",
    ):
        with pytest.raises(BadRequest) as refused:
            await run_unguarded(runtime, sql, {table: "customers"})
        assert refused.value.code in {"not_allowed", "query_failed"}, sql

    async with connected(runtime.settings) as connection:
        assert await connection.scalar(text(f"SELECT count(*) FROM {table}")) == 3


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT * FROM pg_authid",
        "SELECT lo_import('/etc/passwd')",
    ],
)
@pytest.mark.backends("postgresql")
async def test_postgresql_role_cannot_reach_files_or_secrets(
    client: httpx.AsyncClient, app: FastAPI, backend: str, sql: str
) -> None:
    runtime = runtime_of(app)
    table = await customers_table(client, runtime)

    with pytest.raises(BadRequest) as refused:
        await run_unguarded(runtime, sql, {table: "customers"})

    assert refused.value.code in {"not_allowed", "query_failed"}


@pytest.mark.backends("postgresql")
async def test_postgresql_statement_runs_as_its_owners_role(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    runtime = runtime_of(app)
    table = await customers_table(client, runtime)

    rows = await run_unguarded(
        runtime,
        "SELECT current_user, current_setting('transaction_read_only'), "
        "current_setting('statement_timeout')",
        {table: "customers"},
    )

    owner = await owner_of_table(runtime, table)
    assert rows == [[owner_role(runtime.settings.query_database_role, owner), "on", "2s"]]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM sqlite_master",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA query_only = OFF",
        "SELECT * FROM pragma_table_info('users')",
        "SELECT sqlite_compileoption_used('THREADSAFE')",
        "SELECT load_extension('x')",
    ],
)
@pytest.mark.backends("sqlite")
async def test_sqlite_authorizer_denies_catalogue_pragma_attach_and_functions(
    client: httpx.AsyncClient, app: FastAPI, backend: str, sql: str
) -> None:
    runtime = runtime_of(app)
    table = await customers_table(client, runtime)

    with pytest.raises(BadRequest) as refused:
        await run_unguarded(runtime, sql, {table: "customers"})

    assert refused.value.code == "not_allowed"


async def _guarded_then_run(runtime: Runtime, table: str, call: str) -> None:
    backend = runtime.backend
    analysis = guard.analyse(f"SELECT {call} FROM t", backend)
    sql = guard.render(analysis, {"t": table}, backend)
    await run_unguarded(runtime, sql, {table: "t"})


async def test_database_allows_every_function_the_guard_allows(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    """Layer 3 must not refuse what layer 1 lets through: each allowed call of the guard's
    list runs as the query role (PostgreSQL) or past the authorizer (SQLite)."""
    runtime = runtime_of(app)
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    fields = [
        {"name": "a", "type": "integer", "primary_key": True},
        {"name": "b", "type": "string"},
        {"name": "c", "type": "boolean"},
        {"name": "t", "type": "datetime"},
        {"name": "data", "type": "json"},
    ]
    await define(client, headers, {"name": "t", "fields": fields})
    await insert_rows(
        runtime.settings,
        "t",
        [{"a": 1, "b": "x,y", "c": True, "t": datetime(2024, 1, 1, tzinfo=UTC), "data": {}}],
    )
    async with runtime.engine.connect() as connection:
        table = await connection.scalar(text("SELECT table_name FROM schemas WHERE name = 't'"))
    assert isinstance(table, str)
    extra = ALLOWED_CALLS_POSTGRES if backend == "postgresql" else ALLOWED_CALLS_SQLITE
    calls = [call for groups in (ALLOWED_CALLS_BOTH, extra) for c in groups.values() for call in c]

    refused = []
    for call in calls:
        try:
            await _guarded_then_run(runtime, table, call)
        except BadRequest as exc:
            if exc.code == "not_allowed":
                refused.append((call, exc.message))
    assert refused == []
