"""Who is calling: reusable dependencies for every router that needs an identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from tablehouse.api.dependencies import RuntimeDep, SessionDep, is_read
from tablehouse.auth import principal
from tablehouse.auth.models import Scope
from tablehouse.auth.principal import Principal
from tablehouse.auth.sessions import Client, Issuer
from tablehouse.errors import Forbidden, NotAuthenticated

# auto_error=False: a missing token gets our own 401 body, not FastAPI's.
bearer = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="An access token from /auth/login or /auth/token, or an API key (th_...)",
)


async def utc_now() -> datetime:
    return datetime.now(UTC)


Now = Annotated[datetime, Depends(utc_now)]


async def get_issuer(runtime: RuntimeDep) -> Issuer:
    return Issuer(codec=runtime.tokens, settings=runtime.settings)


IssuerDep = Annotated[Issuer, Depends(get_issuer)]


async def get_client(request: Request) -> Client:
    return Client(
        address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


ClientDep = Annotated[Client, Depends(get_client)]


async def current_principal(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    now: Now,
    token: Annotated[str | None, Depends(bearer)],
) -> Principal:
    if not token:
        raise NotAuthenticated("sign in: send 'Authorization: Bearer <token>'")
    return await principal.authenticate(
        session,
        codec=runtime.tokens,
        token=token,
        idle_timeout=timedelta(minutes=runtime.settings.session_idle_timeout_minutes),
        now=now,
        record_use=not is_read(request),
    )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(caller: CurrentPrincipal) -> Principal:
    """A person signed in with a password: account management is not for API keys."""
    if caller.session_id is None:
        raise Forbidden("this needs a login session, not an API key", code="session_required")
    return caller


CurrentUser = Annotated[Principal, Depends(current_user)]


async def current_admin(caller: CurrentUser) -> Principal:
    if not caller.is_admin:
        raise Forbidden("administrators only", code="admin_required")
    return caller


CurrentAdmin = Annotated[Principal, Depends(current_admin)]


def require_scope(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(caller: CurrentPrincipal) -> Principal:
        if scope not in caller.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope", code="scope_required")
        return caller

    return check


ReadAccess = Annotated[Principal, Depends(require_scope(Scope.READ))]
WriteAccess = Annotated[Principal, Depends(require_scope(Scope.WRITE))]
QueryAccess = Annotated[Principal, Depends(require_scope(Scope.QUERY))]
