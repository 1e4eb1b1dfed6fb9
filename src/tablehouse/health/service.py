"""Readiness: can this instance serve requests that need its stores right now?"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.core.database import backend_name, pool_figures, server_version
from tablehouse.health.schemas import DatabaseState, Readiness


async def check_database(engine: AsyncEngine, *, within: float) -> DatabaseState:
    try:
        async with asyncio.timeout(within):
            version = await server_version(engine)
    except Exception as exc:  # any failure to answer means "not ready", never a 500
        return DatabaseState(
            status="unreachable",
            backend=backend_name(engine),
            error=type(exc).__name__,
            pool=pool_figures(engine),
        )
    return DatabaseState(
        status="ok", backend=backend_name(engine), version=version, pool=pool_figures(engine)
    )


async def readiness(engine: AsyncEngine, *, within: float) -> Readiness:
    database = await check_database(engine, within=within)
    return Readiness(status="ok" if database.status == "ok" else "unavailable", database=database)
