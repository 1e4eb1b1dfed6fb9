"""Readiness: can this instance serve requests that need its stores right now?"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.core.database import backend_of, pool_figures, server_version
from tablehouse.health.schemas import DatabaseState, Readiness


async def check_database(engine: AsyncEngine, *, within: float) -> DatabaseState:
    try:
        async with asyncio.timeout(within):
            version = await server_version(engine)
    except Exception as exc:  # any failure to answer means "not ready", never a 500
        return DatabaseState(
            status="unreachable",
            backend=backend_of(engine),
            error=type(exc).__name__,
            pool=pool_figures(engine),
        )
    return DatabaseState(
        status="ok", backend=backend_of(engine), version=version, pool=pool_figures(engine)
    )


async def readiness(
    engine: AsyncEngine,
    *,
    reads: AsyncEngine,
    replica: AsyncEngine | None = None,
    within: float,
) -> Readiness:
    """The primary database, with both its pools; and the replica queries run on, if any.
    Not ready when either cannot answer: this instance could not serve every request."""
    database = await check_database(engine, within=within)
    database.read_pool = pool_figures(reads)
    replica_state = None if replica is None else await check_database(replica, within=within)
    states = [database] if replica_state is None else [database, replica_state]
    ready = all(state.status == "ok" for state in states)
    return Readiness(
        status="ok" if ready else "unavailable", database=database, replica=replica_state
    )
