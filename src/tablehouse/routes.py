"""Assembles every domain's router; a new domain adds its router here.

This lives above both ``api`` (shared HTTP pieces) and the domains, so that domains can use
``api`` without ``api`` having to know the domains.
"""

from __future__ import annotations

from fastapi import FastAPI

from tablehouse.analytics.router import router as analytics_router
from tablehouse.auth.router import router as auth_router
from tablehouse.auth.router import users_router
from tablehouse.datasets.router import router as datasets_router
from tablehouse.health.router import router as health_router
from tablehouse.query.router import router as query_router
from tablehouse.rows.router import router as rows_router


def include_routers(app: FastAPI) -> None:
    app.include_router(health_router)  # /health, /health/ready and /metrics (where scrapers look)
    # Straight onto the app, not under one /api/v1 router: each level of nesting is matched
    # again on every request (each router carries the whole prefix itself, api/paths.py).
    # Routes are tried in order, so the busiest paths come first.
    for router in (
        query_router,
        rows_router,
        datasets_router,
        users_router,
        auth_router,
        analytics_router,
    ):
        app.include_router(router)
