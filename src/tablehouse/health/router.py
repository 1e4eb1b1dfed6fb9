from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from fastapi import APIRouter, Request, Response
from fastapi.security.utils import get_authorization_scheme_param

from tablehouse.api.dependencies import RuntimeDep
from tablehouse.api.runtime import Runtime
from tablehouse.auth.dependencies import is_operator
from tablehouse.health import service
from tablehouse.health.schemas import AnalyticsState, Liveness, Readiness, ReadinessSummary


class Reports(Protocol):
    """What the analytics part of the app tells readiness (set on ``app.state.analytics``)."""

    def report(self) -> Mapping[str, object]: ...


router = APIRouter(prefix="/health", tags=["health"])


@router.get("", summary="Liveness: the process answers; touches no store")
async def liveness() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    summary="Readiness: every store this instance needs answers (details: METRICS_TOKEN or "
    "administrators)",
    responses={
        503: {"model": Readiness | ReadinessSummary, "description": "a store is unreachable"}
    },
)
async def ready(
    runtime: RuntimeDep, request: Request, response: Response
) -> Readiness | ReadinessSummary:
    result = await _readiness(runtime, request)
    if result.status != "ok":
        response.status_code = 503
    # Versions, pools and the analytics store's address help an attacker more than a probe:
    # anyone else learns only whether each part is up.
    token = _bearer_token(request)
    if await is_operator(runtime, token, within=runtime.settings.db_connect_timeout):
        return result
    return result.summary()


def _bearer_token(request: Request) -> str | None:
    """The token, read by hand: declared as security, the operation would read as one that
    refuses anonymous callers, which a probe must never be."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    return token if scheme.lower() == "bearer" and token else None


async def _readiness(runtime: Runtime, request: Request) -> Readiness:
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
    return result
