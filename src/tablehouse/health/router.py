from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from fastapi import APIRouter, Request, Response

from tablehouse.api.dependencies import RuntimeDep
from tablehouse.health import service
from tablehouse.health.schemas import AnalyticsState, Liveness, Readiness


class Reports(Protocol):
    """What the analytics part of the app tells readiness (set on ``app.state.analytics``)."""

    def report(self) -> Mapping[str, object]: ...


router = APIRouter(prefix="/health", tags=["health"])


@router.get("", summary="Liveness: the process answers; touches no store")
async def liveness() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    summary="Readiness: every store this instance needs answers",
    responses={503: {"model": Readiness, "description": "a store is unreachable"}},
)
async def ready(runtime: RuntimeDep, request: Request, response: Response) -> Readiness:
    replica = runtime.query_engine if runtime.query_engine is not runtime.read_engine else None
    result = await service.readiness(
        runtime.engine,
        reads=runtime.read_engine,
        replica=replica,
        within=runtime.settings.db_connect_timeout,
    )
    analytics: Reports | None = getattr(request.app.state, "analytics", None)
    if analytics is not None:
        result.analytics = AnalyticsState.model_validate(analytics.report())
    if result.status != "ok":
        response.status_code = 503
    return result
