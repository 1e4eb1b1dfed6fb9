"""Layer 3: what the database itself refuses to the query engine, when a statement gets
past the guard. These run statements straight on the executor, skipping the guard."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tablehouse.api.runtime import Runtime
from tablehouse.config import Settings
from tablehouse.core import migrations, query_roles
from tablehouse.core.query_roles import owner_role
from tablehouse.errors import BadRequest
from tablehouse.query import guard
from tablehouse.query.execution import Statement, open_cursor
from tablehouse.query.postgres import PostgresBackend
from tablehouse.query.privileges import QueryRoleMissing, check_query_role
from tablehouse.query.sqlite import SqliteBackend
from tests.accounts import bearer, promote_to_admin, signed_up
from tests.databases import connected, postgres_sql
from tests.processes import run_tablehouse
from tests.query_helpers import CUSTOMERS, QUERY, shop
from tests.row_tables import SCHEMAS, define, insert_rows
from tests.test_query_guard import ALLOWED_CALLS_BOTH, ALLOWED_CALLS_POSTGRES, ALLOWED_CALLS_SQLITE


def runtime_of(app: FastAPI) -> Runtime:
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


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
    backend = (
        PostgresBackend(runtime.settings.query_database_role)
        if engine.dialect.name == "postgresql"
        else SqliteBackend()
    )
    if owner_id is None and tables:
        owner_id = await _owner_of_table(runtime, next(iter(tables)))
    statement = Statement(sql=sql, parameters=(), values={}, tables=tables, owner_id=owner_id)
    async with (
        engine.connect() as connection,
        open_cursor(connection, backend, statement, timeout_ms=2000) as cursor,
    ):
        return [list(row) for row in await cursor.fetch(100)]


async def _owner_of_table(runtime: Runtime, table: str) -> uuid.UUID:
    async with runtime.engine.connect() as connection:
        owner = await connection.scalar(
            text("SELECT owner_id FROM schemas WHERE table_name = :table"), {"table": table}
        )
    return uuid.UUID(str(owner))


async def test_the_callers_own_table_can_be_read(client: httpx.AsyncClient, app: FastAPI) -> None:
    runtime = runtime_of(app)
    table = await customers_table(client, runtime)

    rows = await run_unguarded(runtime, f"SELECT count(*) FROM {table}", {table: "customers"})

    assert rows == [[3]]


UNREACHABLE = [
    "SELECT email FROM users",
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

    owner = await _owner_of_table(runtime, table)
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


async def _grants(runtime: Runtime, role: str) -> set[str]:
    """The tables ``role`` may SELECT from, and the roles it is a member of (none expected)."""
    async with connected(runtime.settings) as connection:
        tables = set(
            (
                await connection.execute(
                    text(
                        "SELECT table_name FROM information_schema.table_privileges "
                        "WHERE grantee = :role AND privilege_type = 'SELECT'"
                    ),
                    {"role": role},
                )
            ).scalars()
        )
        memberships = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
                "WHERE r.rolname = :role"
            ),
            {"role": role},
        )
    assert memberships == 0
    return tables


@pytest.mark.backends("postgresql")
async def test_postgresql_owners_role_is_granted_the_owners_tables_only(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    runtime = runtime_of(app)
    customers = await customers_table(client, runtime)
    orders, owner = await dataset(runtime, "orders")
    shared = runtime.settings.query_database_role

    assert await _grants(runtime, owner_role(shared, owner)) == {customers, orders}
    assert await _grants(runtime, shared) == set()


async def _second_owner(client: httpx.AsyncClient, runtime: Runtime) -> tuple[str, uuid.UUID]:
    """Bob, with a dataset ``notes`` of his own."""
    headers = bearer((await signed_up(client, "bob@example.com"))["access_token"])
    fields = [{"name": "id", "type": "integer", "primary_key": True}]
    await define(client, headers, {"name": "notes", "fields": fields})
    return await dataset(runtime, "notes")


@pytest.mark.backends("postgresql")
async def test_postgresql_database_refuses_another_owners_table_past_the_guard(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    runtime = runtime_of(app)
    adas_customers = await customers_table(client, runtime)
    bobs_notes, bob = await _second_owner(client, runtime)

    # Bob's statement, rendered as if the guard had let Ada's table through.
    with pytest.raises(BadRequest) as refused:
        await run_unguarded(
            runtime,
            f"SELECT n.id, c.name FROM {bobs_notes} n, {adas_customers} c",
            {bobs_notes: "notes"},
            owner_id=bob,
        )

    assert refused.value.code == "not_allowed"
    assert "permission denied" in refused.value.message
    assert await run_unguarded(runtime, f"SELECT count(*) FROM {bobs_notes}", {}, bob) == [[0]]


@pytest.mark.backends("postgresql")
async def test_postgresql_statement_over_no_dataset_may_read_no_dataset_table(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    runtime = runtime_of(app)
    table = await customers_table(client, runtime)

    assert await run_unguarded(runtime, "SELECT current_user", {}) == [
        [runtime.settings.query_database_role]
    ]
    with pytest.raises(BadRequest) as refused:
        await run_unguarded(runtime, f"SELECT count(*) FROM {table}", {})
    assert refused.value.code == "not_allowed"


@pytest.mark.backends("postgresql")
async def test_postgresql_evolving_a_dataset_keeps_its_owners_grant(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    runtime = runtime_of(app)
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await shop(client, headers)
    changes = [
        {"op": "add_field", "field": {"name": "country", "type": "string"}},
        {"op": "rename_field", "name": "city", "new_name": "town"},
        {"op": "drop_field", "name": "country"},
    ]

    for change in changes:
        changed = await client.patch(
            "/api/v1/schemas/customers", json={"changes": [change]}, headers=headers
        )
        assert changed.status_code == 200, changed.text
        answer = await client.post(
            QUERY, json={"sql": "SELECT count(*) AS n FROM customers"}, headers=headers
        )
        assert answer.status_code == 200, (change, answer.text)
        assert answer.json()["rows"] == [[3]]

    table, owner = await dataset(runtime, "customers")
    role = owner_role(runtime.settings.query_database_role, owner)
    assert table in await _grants(runtime, role)


@pytest.mark.backends("postgresql")
async def test_postgresql_new_users_first_dataset_is_queryable(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    runtime = runtime_of(app)
    await customers_table(client, runtime)  # Ada's datasets exist already
    headers = bearer((await signed_up(client, "bob@example.com"))["access_token"])
    await define(client, headers, CUSTOMERS)

    answer = await client.post(
        QUERY, json={"sql": "SELECT count(*) AS n FROM customers"}, headers=headers
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [[0]]  # Bob's own, empty; not Ada's three
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    role = owner_role(runtime.settings.query_database_role, uuid.UUID(me["id"]))
    assert len(await _grants(runtime, role)) == 1


@pytest.mark.backends("postgresql")
async def test_postgresql_deleting_a_user_drops_their_role(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, backend: str
) -> None:
    runtime = runtime_of(app)
    _, bob = await _second_owner(client, runtime)
    admin = bearer((await signed_up(client, "root@example.com"))["access_token"])
    await promote_to_admin(settings, "root@example.com")
    role = owner_role(runtime.settings.query_database_role, bob)
    assert await _role_exists(runtime, role)

    deleted = await client.delete(f"/api/v1/users/{bob}", headers=admin)

    assert deleted.status_code == 204, deleted.text
    assert not await _role_exists(runtime, role)


async def _role_exists(runtime: Runtime, role: str) -> bool:
    async with connected(runtime.settings) as connection:
        found = await connection.scalar(
            text("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :role)"), {"role": role}
        )
    return bool(found)


BEFORE_OWNER_ROLES = "20261122_0004"


@pytest.mark.backends("postgresql")
async def test_postgresql_migration_moves_existing_datasets_to_their_owners_roles(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, backend: str
) -> None:
    runtime = runtime_of(app)
    customers = await customers_table(client, runtime)
    orders, owner = await dataset(runtime, "orders")
    shared = settings.query_database_role
    role = owner_role(shared, owner)

    await asyncio.to_thread(migrations.downgrade, settings, BEFORE_OWNER_ROLES)
    assert await _grants(runtime, shared) == {customers, orders}
    assert not await _role_exists(runtime, role)

    await asyncio.to_thread(migrations.upgrade, settings, "head")
    assert await _grants(runtime, shared) == set()
    assert await _grants(runtime, role) == {customers, orders}
    assert await run_unguarded(runtime, f"SELECT count(*) FROM {orders}", {orders: "o"}) == [[5]]


async def _guarded_then_run(runtime: Runtime, table: str, call: str) -> None:
    backend: guard.Backend = (
        "postgresql" if runtime.query_engine.dialect.name == "postgresql" else "sqlite"
    )
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


@pytest.mark.backends("postgresql")
async def test_postgresql_first_datasets_made_at_once_share_one_new_role(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    runtime = runtime_of(app)
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    fields = [{"name": "id", "type": "integer", "primary_key": True}]

    created = await asyncio.gather(
        *(
            client.post(SCHEMAS, json={"name": f"d{n}", "fields": fields}, headers=headers)
            for n in range(4)
        )
    )

    assert [response.status_code for response in created] == [201] * 4
    _, owner = await dataset(runtime, "d0")
    role = owner_role(runtime.settings.query_database_role, owner)
    assert len(await _grants(runtime, role)) == 4


@pytest.mark.backends("postgresql")
async def test_postgresql_start_refuses_a_login_that_cannot_make_owner_roles(
    app: FastAPI, settings: Settings, backend: str
) -> None:
    login = f"th_login_{uuid.uuid4().hex[:12]}"
    shared = settings.query_database_role
    await _admin_sql(f"CREATE ROLE {login} LOGIN NOCREATEROLE; GRANT {shared} TO {login}")
    engine = create_async_engine(make_url(settings.database_url).set(username=login))
    try:
        with pytest.raises(QueryRoleMissing, match="CREATEROLE"):
            await check_query_role(engine, shared)
    finally:
        await engine.dispose()
        await _admin_sql(f"DROP ROLE {login}")


async def _admin_sql(sql: str) -> None:
    await asyncio.to_thread(postgres_sql, sql)


@pytest.mark.backends("postgresql")
async def test_postgresql_db_roles_makes_missing_owner_roles_again(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, backend: str
) -> None:
    """As after restoring a dump into a cluster that lacks the roles (pg_dump has none)."""
    runtime = runtime_of(app)
    customers = await customers_table(client, runtime)
    orders, owner = await dataset(runtime, "orders")
    role = owner_role(settings.query_database_role, owner)
    async with connected(settings, begin=True) as connection:
        await connection.run_sync(lambda sync: query_roles.drop(sync, role))
    assert not await _role_exists(runtime, role)
    env = {
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(settings.data_dir),
        "ANALYTICS_ENABLED": "false",
    }

    repaired = await asyncio.to_thread(run_tablehouse, "db", "roles", env=env)

    assert repaired.returncode == 0, repaired.stderr
    assert "2 dataset tables granted" in repaired.stdout
    assert await _grants(runtime, role) == {customers, orders}


@pytest.mark.backends("postgresql")
async def test_postgresql_query_with_its_owners_role_gone_says_how_to_repair(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, backend: str
) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await shop(client, headers)
    _, owner = await dataset(runtime_of(app), "orders")
    role = owner_role(settings.query_database_role, owner)
    async with connected(settings, begin=True) as connection:
        await connection.run_sync(lambda sync: query_roles.drop(sync, role))

    answer = await client.post(QUERY, json={"sql": "SELECT count(*) FROM orders"}, headers=headers)

    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "query_role_missing"
    assert "tablehouse db roles" in answer.json()["detail"]
