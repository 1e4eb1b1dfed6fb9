"""Who may read this process's details: the scraper's METRICS_TOKEN, or an administrator."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security.utils import get_authorization_scheme_param

from tablehouse.api.dependencies import ReadSessionDep, RuntimeDep
from tablehouse.auth.dependencies import bearer, current_principal, holds_metrics_token
from tablehouse.errors import Forbidden


async def may_read_metrics(
    request: Request,
    session: ReadSessionDep,
    runtime: RuntimeDep,
    token: Annotated[str | None, Depends(bearer)],
) -> None:
    """The scraper's METRICS_TOKEN, or an administrator signed in with a password."""
    if holds_metrics_token(runtime.settings, token):
        return
    caller = await current_principal(request, session, token)
    if not caller.is_admin or caller.session_id is None:
        raise Forbidden("metrics are for administrators or METRICS_TOKEN", code="admin_required")


async def probe_token(request: Request) -> str | None:
    """The bearer token, read by hand: declared as security, the operation would read as one
    that refuses anonymous callers, which a probe must never be."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    return token if scheme.lower() == "bearer" and token else None


ProbeToken = Annotated[str | None, Depends(probe_token)]
