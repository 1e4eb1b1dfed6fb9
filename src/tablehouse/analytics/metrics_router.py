"""GET /metrics: this process's metrics in Prometheus text format."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tablehouse.api.dependencies import ReadSessionDep, RuntimeDep
from tablehouse.api.responses import errors
from tablehouse.auth.dependencies import Now, bearer, current_principal, holds_metrics_token
from tablehouse.core.metrics import Metrics
from tablehouse.errors import Forbidden

router = APIRouter(tags=["metrics"])


async def may_read_metrics(
    request: Request,
    session: ReadSessionDep,
    runtime: RuntimeDep,
    now: Now,
    token: Annotated[str | None, Depends(bearer)],
) -> None:
    """The scraper's METRICS_TOKEN, or an administrator signed in with a password."""
    if holds_metrics_token(runtime.settings, token):
        return
    caller = await current_principal(request, session, runtime, now, token)
    if not caller.is_admin or caller.session_id is None:
        raise Forbidden("metrics are for administrators or METRICS_TOKEN", code="admin_required")


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process (METRICS_TOKEN or administrators)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **errors(401, 403, 503),
    },
    dependencies=[Depends(may_read_metrics)],
)
async def prometheus(request: Request) -> Response:
    metrics = request.app.state.metrics
    assert isinstance(metrics, Metrics)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
