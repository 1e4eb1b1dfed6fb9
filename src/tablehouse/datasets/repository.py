"""Catalog queries. Functions take a session and flush; they never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import MetaData, Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.datasets.models import Schema, SchemaVersion

Lock = Literal["share", "update"] | None


_BY_NAME = select(Schema).where(
    Schema.owner_id == bindparam("owner_id"), Schema.name == bindparam("name")
)


async def by_name(
    session: AsyncSession, owner_id: uuid.UUID, name: str, *, lock: Lock = None
) -> Schema | None:
    """``lock`` holds the catalog row until the unit of work ends (PostgreSQL; SQLite units
    of work are serialised already): "update" for changing or dropping the dataset, "share"
    for writing rows, so rows are never written into a table that is being dropped."""
    if lock is None:  # every read asks this: a statement built once
        return await session.scalar(_BY_NAME, {"owner_id": owner_id, "name": name})
    query = select(Schema).where(Schema.owner_id == owner_id, Schema.name == name)
    query = query.with_for_update(read=lock == "share").execution_options(populate_existing=True)
    return await session.scalar(query)


async def page(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    limit: int,
    offset: int,
    only: frozenset[str] | None = None,
) -> tuple[list[Schema], int]:
    mine = select(Schema).where(Schema.owner_id == owner_id)
    if only is not None:
        mine = mine.where(Schema.name.in_(only))
    total = await session.scalar(select(func.count()).select_from(mine.subquery()))
    rows = await session.scalars(mine.order_by(Schema.name).limit(limit).offset(offset))
    return list(rows), int(total or 0)


async def versions(session: AsyncSession, schema_id: uuid.UUID) -> list[SchemaVersion]:
    rows = await session.scalars(
        select(SchemaVersion)
        .where(SchemaVersion.schema_id == schema_id)
        .order_by(SchemaVersion.number)
    )
    return list(rows)


async def row_count(session: AsyncSession, table_name: str) -> int:
    table = Table(table_name, MetaData())
    return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def owners_tables(session: AsyncSession) -> list[tuple[uuid.UUID, str]]:
    """``(owner_id, table_name)`` of every dataset."""
    rows = await session.execute(
        select(Schema.owner_id, Schema.table_name).order_by(Schema.owner_id)
    )
    return [(owner_id, table_name) for owner_id, table_name in rows]


async def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)
    await session.flush()


_TABLES_NAMED = select(
    Schema.name, Schema.id, Schema.version, Schema.table_name, Schema.fields
).where(
    Schema.owner_id == bindparam("owner_id"),
    func.lower(Schema.name).in_(bindparam("names", expanding=True)),
)


async def tables_named(
    session: AsyncSession, owner_id: uuid.UUID, names: Iterable[str]
) -> list[tuple[str, uuid.UUID, int, str, list[dict[str, Any]]]]:
    """``(name, id, version, table_name, fields)`` of the owner's datasets whose names match
    any of ``names`` ignoring case (the caller decides which spelling wins). Every query asks this:
    a Core statement built once, on the session's connection, skipping the ORM."""
    connection = await session.connection()
    rows = await connection.execute(
        _TABLES_NAMED,
        {"owner_id": owner_id, "names": sorted({name.lower() for name in names})},
    )
    return [
        (name, schema_id, version, table, fields)
        for name, schema_id, version, table, fields in rows
    ]
