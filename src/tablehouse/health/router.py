from __future__ import annotations

from fastapi import APIRouter, Response

from tablehouse.api.dependencies import RuntimeDep
from tablehouse.health import service
from tablehouse.health.schemas import Liveness, Readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("", summary="Liveness: the process answers; touches no store")
async def liveness() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    summary="Readiness: every store this instance needs answers",
    responses={503: {"model": Readiness, "description": "a store is unreachable"}},
)
async def ready(runtime: RuntimeDep, response: Response) -> Readiness:
    replica = runtime.query_engine if runtime.query_engine is not runtime.read_engine else None
    result = await service.readiness(
        runtime.engine,
        reads=runtime.read_engine,
        replica=replica,
        within=runtime.settings.db_connect_timeout,
    )
    if result.status != "ok":
        response.status_code = 503
    return result
