"""Throwaway databases for tests: a migrated template per backend, a copy per test.

Each test gets its own database (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on
PostgreSQL), so tests never see each other's rows and never touch any other database.
On PostgreSQL, making and dropping a database costs about half a second of waiting (the
server writes and syncs the copy): ``PostgresSupply`` does both in a thread of its own, the
next test's database made while this test runs, this test's dropped while the next runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from tablehouse.config import Settings, load_settings
from tablehouse.core import migrations
from tablehouse.core.database import create_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = [
    name for name in os.environ.get("TEST_BACKENDS", "sqlite,postgresql").split(",") if name
]


def settings_for(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    return load_settings(
        _env_file=None,  # a developer's .env must not leak into tests
        database_url=database_url,
        data_dir=data_dir,
        environment="test",
        db_startup_attempts=1,
        db_startup_retry_delay=0,
        # Cheap hashing keeps the suite fast; the production parameters are tested on their own.
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
        # chDB opens one data path per process: tests that want analytics ask for it, on the
        # process's shared path (tests/support/analytics_store.py).
        **{"analytics_enabled": False, **overrides},
    )


def _admin_dsn() -> str:
    return make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql").render_as_string(False)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(_admin_dsn(), timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def postgres_sql(sql: str) -> None:
    asyncio.run(_admin(sql))


def postgres_url(database: str) -> str:
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def create_postgres_database(template: str | None = None) -> str:
    name = unique_name("th_test")
    suffix = f" TEMPLATE {template}" if template else ""
    postgres_sql(f"CREATE DATABASE {name}{suffix}")
    return name


def drop_postgres_database(name: str) -> None:
    """Drop the database and the owners' query roles it made: roles are cluster-wide and
    outlive it, and the suite makes thousands of databases on one shared server."""
    asyncio.run(_drop_with_roles(name))


# Owner roles are named "<query role>_<user id in hex>" (tablehouse.core.query_roles).
_OWNER_ROLES = """
SELECT rolname FROM pg_roles
WHERE rolname ~ '_[0-9a-f]{32}$' AND right(rolname, 32) = ANY($1::text[])
"""


async def _owner_roles_in(name: str) -> list[str]:
    dsn = make_url(_admin_dsn()).set(database=name).render_as_string(False)
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except asyncpg.InvalidCatalogNameError:
        return []
    try:
        if await connection.fetchval("SELECT to_regclass('users')") is None:
            return []
        users = [row["id"].hex for row in await connection.fetch("SELECT id FROM users")]
        return [row["rolname"] for row in await connection.fetch(_OWNER_ROLES, users)]
    finally:
        await connection.close()


async def _drop_with_roles(name: str) -> None:
    try:
        roles = await _owner_roles_in(name)
    except (OSError, asyncpg.PostgresError):
        roles = []  # the database must go all the same
    connection = await asyncpg.connect(_admin_dsn(), timeout=5)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for role in roles:
            # Kept while another database still grants it something; dropped with that one.
            with contextlib.suppress(asyncpg.DependentObjectsStillExistError):
                await connection.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await connection.close()


class PostgresSupply:
    """Fresh copies of ``template``, one made ahead; used ones dropped behind the tests."""

    def __init__(self, template: str) -> None:
        self._template = template
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._next = self._make()
        self._drops: list[Future[None]] = []

    def _make(self) -> Future[str]:
        return self._thread.submit(create_postgres_database, self._template)

    def take(self) -> str:
        """A database no test has used (``CREATE DATABASE ... TEMPLATE``); the next is begun."""
        name = self._next.result()
        self._next = self._make()
        return name

    def give_back(self, name: str) -> None:
        """Drop ``name`` (and its owners' roles) once the thread gets to it."""
        self._drops = [drop for drop in self._drops if not drop.done() or drop.exception()]
        self._drops.append(self._thread.submit(drop_postgres_database, name))

    def close(self) -> None:
        """Drop the database made ahead; wait for every drop, failing if one failed."""
        self.give_back(self._next.result())
        self._thread.shutdown(wait=True)
        for drop in self._drops:
            drop.result()


def migrated_sqlite_template(directory: Path) -> Path:
    path = directory / "template.db"
    migrations.upgrade(settings_for(f"sqlite+aiosqlite:///{path}", directory))
    return path


def copy_sqlite(template: Path, directory: Path) -> str:
    path = directory / "tablehouse.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


def migrated_postgres_template(data_dir: Path) -> str:
    name = create_postgres_database()
    migrations.upgrade(settings_for(postgres_url(name), data_dir))
    return name


@asynccontextmanager
async def connected(settings: Settings, *, begin: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection to the test's database on a short-lived engine; ``begin`` commits at the end."""
    engine = create_engine(settings)
    try:
        async with engine.begin() if begin else engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()
