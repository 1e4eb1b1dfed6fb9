"""Catalog queries. Functions take a session and flush; they never commit."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import MetaData, Table, bindparam, func, select

from tablehouse.core.database import ReadSession, WriteSession
from tablehouse.datasets.models import Dataset, DatasetVersion

Lock = Literal["share", "update"]


_BY_NAME = select(Dataset).where(
    Dataset.owner_id == bindparam("owner_id"), Dataset.name == bindparam("name")
)


async def by_name(session: ReadSession, owner_id: uuid.UUID, name: str) -> Dataset | None:
    """Every read asks this: a statement built once."""
    return await session.scalar(_BY_NAME, {"owner_id": owner_id, "name": name})


async def locked_by_name(
    session: WriteSession, owner_id: uuid.UUID, name: str, *, lock: Lock
) -> Dataset | None:
    """``lock`` holds the catalog row until the unit of work ends (PostgreSQL; SQLite units
    of work are serialised already): "update" for changing or dropping the dataset, "share"
    for writing rows, so rows are never written into a table that is being dropped."""
    query = select(Dataset).where(Dataset.owner_id == owner_id, Dataset.name == name)
    query = query.with_for_update(read=lock == "share").execution_options(populate_existing=True)
    return await session.scalar(query)


async def page(
    session: ReadSession,
    owner_id: uuid.UUID,
    *,
    limit: int,
    offset: int,
    only: frozenset[str] | None = None,
) -> tuple[list[Dataset], int]:
    mine = select(Dataset).where(Dataset.owner_id == owner_id)
    if only is not None:
        mine = mine.where(Dataset.name.in_(only))
    total = await session.scalar(select(func.count()).select_from(mine.subquery()))
    rows = await session.scalars(mine.order_by(Dataset.name).limit(limit).offset(offset))
    return list(rows), int(total or 0)


async def versions(session: ReadSession, schema_id: uuid.UUID) -> list[DatasetVersion]:
    rows = await session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.schema_id == schema_id)
        .order_by(DatasetVersion.number)
    )
    return list(rows)


async def row_count(session: ReadSession, table_name: str) -> int:
    table = Table(table_name, MetaData())
    return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def owners_tables(session: ReadSession) -> list[tuple[uuid.UUID, str]]:
    """``(owner_id, table_name)`` of every dataset."""
    rows = await session.execute(
        select(Dataset.owner_id, Dataset.table_name).order_by(Dataset.owner_id)
    )
    return [(owner_id, table_name) for owner_id, table_name in rows]


async def add(session: WriteSession, *rows: object) -> None:
    session.add_all(rows)
    await session.flush()
