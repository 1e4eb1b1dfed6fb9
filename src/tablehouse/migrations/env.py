"""Alembic environment: async engine, the app's own URL function, batch mode on SQLite."""

from __future__ import annotations

import asyncio
from typing import Literal

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

import tablehouse.models  # noqa: F401  (registers every domain's tables on Base.metadata)
from tablehouse.config import Settings, load_settings
from tablehouse.core.database import create_migration_engine, database_url
from tablehouse.core.models import Base
from tablehouse.datasets.models import DATASET_TABLE_PREFIX

config = context.config
target_metadata = Base.metadata


def _settings() -> Settings:
    settings = config.attributes.get("settings")
    return settings if isinstance(settings, Settings) else load_settings()


def _render_item(kind: str, item: object, _context: object) -> str | Literal[False]:
    """Write our column types as the plain SQLAlchemy types they store as.

    Migrations must not import application code that may change or vanish later.
    """
    if kind == "type" and isinstance(item, TypeDecorator):
        return f"sa.{item.impl!r}"
    return False


def _include_name(name: str | None, kind: str, _parent: object) -> bool:
    """Datasets' own tables (ds_*) are made at run time, not by migrations: leave them be."""
    return not (kind == "table" and name is not None and name.startswith(DATASET_TABLE_PREFIX))


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    # Revisions read settings they need from here rather than importing the application.
    config.attributes.setdefault("query_database_role", _settings().query_database_role)
    context.configure(
        connection=connection,
        url=url,
        # Offline mode prints SQL instead of running it, so values must be inlined.
        literal_binds=url is not None,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies and moves the table.
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
        render_item=_render_item,
        include_name=_include_name,
    )


def run_migrations_offline() -> None:
    url = database_url(_settings())
    _configure(url=url.render_as_string(hide_password=False))
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_migration_engine(_settings())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
