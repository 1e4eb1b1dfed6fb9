"""Layer 3 on PostgreSQL, per owner: a statement over datasets runs as its owner's role,
which the database lets read that owner's tables only. These run statements straight on the
executor, skipping the guard, or through the API where the behaviour is the API's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tablehouse.api.runtime import Runtime
from tablehouse.app import create_app
from tablehouse.config import Settings
from tablehouse.core import migrations, query_roles
from tablehouse.core.query_roles import QueryRoleMissing, owner_role
from tablehouse.errors import BadRequest
from tests.support import databases
from tests.support.accounts import bearer, promote_to_admin, signed_up
from tests.support.databases import connected, postgres_sql
from tests.support.processes import run_tablehouse
from tests.support.query_helpers import (
    CUSTOMERS,
    QUERY,
    customers_table,
    dataset,
    run_unguarded,
    shop,
)
from tests.support.row_tables import SCHEMAS, define
from tests.support.serving import runtime_of, started

pytestmark = pytest.mark.backends("postgresql")


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


async def _admin_sql(sql: str) -> None:
    await asyncio.to_thread(postgres_sql, sql)


async def test_postgresql_db_roles_gives_each_owners_tables_back_to_its_role_only(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, backend: str
) -> None:
    """As after restoring a dump into a cluster that lacks the roles (pg_dump has none)."""
    runtime = runtime_of(app)
    customers = await customers_table(client, runtime)
    orders, owner = await dataset(runtime, "orders")
    role = owner_role(settings.query_database_role, owner)
    async with connected(settings, begin=True) as connection:
        await connection.run_sync(lambda sync: query_roles.drop(sync, role))
        # As a process of the version before would have granted a new table.
        await connection.execute(
            text(f"GRANT SELECT ON {orders} TO {settings.query_database_role}")
        )
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
    assert await _grants(runtime, settings.query_database_role) == set()


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


@pytest.fixture
def login_settings(backend: str, postgres_available: None, tmp_path: Path) -> Iterator[Settings]:
    """A database of its own, owned and migrated by a login that is not a superuser but may
    create roles: the deployment the docs recommend (a superuser's SET ROLE checks nothing)."""
    login = f"th_app_{uuid.uuid4().hex[:12]}"
    name = databases.unique_name("th_test")
    postgres_sql(f"CREATE ROLE {login} LOGIN CREATEROLE")
    postgres_sql(f"CREATE DATABASE {name} OWNER {login}")
    url = make_url(databases.postgres_url(name)).set(username=login)
    settings = databases.settings_for(url.render_as_string(False), tmp_path / "data")
    try:
        migrations.upgrade(settings)
        yield settings
    finally:
        databases.drop_postgres_database(name)
        postgres_sql(f"DROP ROLE {login}")


async def test_owners_stay_apart_when_the_login_is_not_a_superuser(
    login_settings: Settings,
) -> None:
    app = create_app(login_settings)
    async with started(app) as client:
        runtime = runtime_of(app)
        adas_customers = await customers_table(client, runtime)
        bobs_notes, bob = await _second_owner(client, runtime)

        with pytest.raises(BadRequest) as refused:
            await run_unguarded(runtime, f"SELECT * FROM {adas_customers}", {}, bob)
        assert refused.value.code == "not_allowed"
        assert await run_unguarded(runtime, f"SELECT count(*) FROM {bobs_notes}", {}, bob) == [[0]]

        admin = bearer((await signed_up(client, "root@example.com"))["access_token"])
        await promote_to_admin(login_settings, "root@example.com")
        deleted = await client.delete(f"/api/v1/users/{bob}", headers=admin)
        assert deleted.status_code == 204, deleted.text
        assert not await _role_exists(runtime, owner_role(login_settings.query_database_role, bob))


async def test_start_refuses_a_login_that_cannot_make_owner_roles(
    login_settings: Settings,
) -> None:
    login = make_url(login_settings.database_url).username
    await _admin_sql(f"ALTER ROLE {login} NOCREATEROLE")
    app = create_app(login_settings)

    with pytest.raises(QueryRoleMissing, match="CREATEROLE"):
        async with app.router.lifespan_context(app):
            pass
