"""How this process runs: liveness and readiness (/health), and its Prometheus metrics
(/metrics, where scrapers look)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tablehouse.api.dependencies import RuntimeDep
from tablehouse.api.responses import errors
from tablehouse.health import service
from tablehouse.health.dependencies import ProbeToken, may_read_metrics
from tablehouse.health.schemas import Liveness, Readiness, ReadinessSummary

router = APIRouter()


@router.get("/health", tags=["health"], summary="Liveness: the process answers; touches no store")
async def liveness() -> Liveness:
    return Liveness()


@router.get(
    "/health/ready",
    tags=["health"],
    summary="Readiness: every store this instance needs answers (details: METRICS_TOKEN or "
    "administrators)",
    responses={
        503: {"model": Readiness | ReadinessSummary, "description": "a store is unreachable"}
    },
)
async def ready(
    runtime: RuntimeDep, token: ProbeToken, response: Response
) -> Readiness | ReadinessSummary:
    result = await service.readiness_of(runtime)
    if result.status != "ok":
        response.status_code = 503
    # Versions, pools and the analytics store's address help an attacker more than a probe:
    # anyone else learns only whether each part is up.
    if await service.may_see_details(runtime, token):
        return result
    return result.summary()


@router.get(
    "/metrics",
    tags=["metrics"],
    summary="Prometheus metrics of this process (METRICS_TOKEN or administrators)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **errors(401, 403, 503),
    },
    dependencies=[Depends(may_read_metrics)],
)
async def prometheus(runtime: RuntimeDep) -> Response:
    return Response(service.exposition(runtime), media_type=CONTENT_TYPE_LATEST)
