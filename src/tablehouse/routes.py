"""Assembles every domain's router; a new domain adds its router here.

This lives above both ``api`` (shared HTTP pieces) and the domains, so that domains can use
``api`` without ``api`` having to know the domains.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from tablehouse.health.router import router as health_router

API_PREFIX = "/api/v1"


def include_routers(app: FastAPI) -> None:
    app.include_router(health_router)
    api = APIRouter(prefix=API_PREFIX)
    app.include_router(api)
