"""Assembles every domain's router; new domains are added here."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from tablehouse.health.router import router as health_router

API_PREFIX = "/api/v1"


def include_routers(app: FastAPI) -> None:
    app.include_router(health_router)
    api = APIRouter(prefix=API_PREFIX)
    app.include_router(api)
