"""Assembles every domain's router; a new domain adds its router here.

This lives above both ``api`` (shared HTTP pieces) and the domains, so that domains can use
``api`` without ``api`` having to know the domains.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from tablehouse.auth.router import router as auth_router
from tablehouse.auth.users_router import router as users_router
from tablehouse.datasets.router import router as datasets_router
from tablehouse.health.router import router as health_router
from tablehouse.query.router import router as query_router
from tablehouse.rows.read_router import router as rows_read_router
from tablehouse.rows.router import router as rows_router

API_PREFIX = "/api/v1"


def include_routers(app: FastAPI) -> None:
    app.include_router(health_router)
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(auth_router)
    api.include_router(users_router)
    api.include_router(datasets_router)
    api.include_router(rows_read_router)
    api.include_router(rows_router)
    api.include_router(query_router)
    app.include_router(api)
