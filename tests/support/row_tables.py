"""Helpers for row API tests: define a dataset over the API, put rows straight into its table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.config import Settings
from tablehouse.core.database import create_engine
from tablehouse.datasets.models import Dataset
from tablehouse.rows.convert.layout import Layout
from tests.support.databases import connected

SCHEMAS = "/api/v1/schemas"


async def define(
    client: httpx.AsyncClient, headers: Mapping[str, str], body: Mapping[str, Any]
) -> None:
    created = await client.post(SCHEMAS, json=dict(body), headers=dict(headers))
    assert created.status_code == 201, created.text


async def layout_of(settings: Settings, name: str) -> Layout:
    engine = create_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            schema = await session.scalar(select(Dataset).where(Dataset.name == name))
            assert schema is not None, name
            return Layout.of(schema)
    finally:
        await engine.dispose()


async def insert_rows(settings: Settings, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """One executemany; a field a row leaves out gets its default, or null."""
    layout = await layout_of(settings, name)
    full = [{f.name: row.get(f.name, f.default) for f in layout.fields} for row in rows]
    async with connected(settings, begin=True) as connection:
        await connection.execute(insert(layout.table), full)


async def run_sql(settings: Settings, statement: str) -> None:
    async with connected(settings) as connection:
        await connection.execute(text(statement))
        await connection.commit()
