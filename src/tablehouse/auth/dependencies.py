"""Who is calling: reusable dependencies for every router that needs an identity."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.exc import SQLAlchemyError

from tablehouse.api.dependencies import RequestSession, RuntimeDep
from tablehouse.api.runtime import Runtime
from tablehouse.auth import principal
from tablehouse.auth.models import Scope
from tablehouse.auth.principal import Principal
from tablehouse.auth.sessions import Client, Issuer
from tablehouse.config import Settings
from tablehouse.core.database import ReadSession, WriteSession, read_uow, uow
from tablehouse.errors import Forbidden, NotAuthenticated, TablehouseError

# auto_error=False: a missing token gets our own 401 body, not FastAPI's. The same header
# also carries API keys: the document declares it as HTTP bearer too (api/security_schemes.py).
bearer = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description=(
        "Sign in with your email (as username) and password, exchanged at /auth/token for "
        "an access token. For an API key, use HTTPBearer."
    ),
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


BearerToken = Annotated[str | None, Depends(bearer)]


async def _authenticated(request: Request, session: ReadSession, token: str | None) -> Principal:
    if not token:
        raise NotAuthenticated("sign in: send 'Authorization: Bearer <token>'")
    runtime = cast(Runtime, request.app.state.runtime)
    return await principal.authenticate(
        session,
        codec=runtime.tokens,
        token=token,
        idle_timeout=runtime.idle_timeout,
        now=datetime.now(UTC),
        record_use=isinstance(session, WriteSession),
    )


async def current_principal(
    request: Request,
    session: ReadSession,
    runtime: RuntimeDep,
    now: Now,
    token: BearerToken,
) -> Principal:
    """The caller, for code that has its runtime and clock at hand (the metrics endpoint)."""
    if not token:
        raise NotAuthenticated("sign in: send 'Authorization: Bearer <token>'")
    return await principal.authenticate(
        session,
        codec=runtime.tokens,
        token=token,
        idle_timeout=runtime.idle_timeout,
        now=now,
        record_use=isinstance(session, WriteSession),
    )


# Every authenticated request resolves one of these, so they take as few dependencies as
# they can (each costs FastAPI some work per request): the session and the bearer token.
async def caller_principal(
    request: Request, session: RequestSession, token: BearerToken
) -> Principal:
    return await _authenticated(request, session, token)


CurrentPrincipal = Annotated[Principal, Depends(caller_principal)]


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


def _holding(scope: Scope, caller: Principal) -> Principal:
    if scope not in caller.scopes:
        raise Forbidden(f"this API key lacks the '{scope}' scope", code="scope_required")
    return caller


def require_scope(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """The caller, who must hold ``scope`` (a login session holds every scope)."""

    async def check(request: Request, session: RequestSession, token: BearerToken) -> Principal:
        return _holding(scope, await _authenticated(request, session, token))

    return check


def require_scope_before_body(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """The caller, who must hold ``scope``, checked in a unit of work of its own that ends
    before the handler runs: for a handler that waits for a long body before it touches the
    database, so that no lock or pooled connection is held while the client sends it."""

    async def check(request: Request, token: BearerToken) -> Principal:
        runtime = cast(Runtime, request.app.state.runtime)
        async with uow(runtime.session_factory) as session:
            caller = await _authenticated(request, session, token)
        return _holding(scope, caller)

    return check


ReadAccess = Annotated[Principal, Depends(require_scope(Scope.READ))]
WriteAccess = Annotated[Principal, Depends(require_scope(Scope.WRITE))]
QueryAccess = Annotated[Principal, Depends(require_scope(Scope.QUERY))]
WriteAccessBeforeBody = Annotated[Principal, Depends(require_scope_before_body(Scope.WRITE))]


def holds_metrics_token(settings: Settings, token: str | None) -> bool:
    """``token`` is the scraper's METRICS_TOKEN (compared in constant time)."""
    configured = settings.metrics_token
    return (
        configured is not None
        and token is not None
        and hmac.compare_digest(token.encode(), configured.get_secret_value().encode())
    )


async def is_operator(runtime: Runtime, token: str | None, *, within: float) -> bool:
    """Whether ``token`` may see how the service runs: METRICS_TOKEN, or an administrator
    signed in with a password. Never raises, for probes that must always get their answer: a
    bad token, or a database that cannot tell within ``within`` seconds, means no."""
    if not token:
        return False
    if holds_metrics_token(runtime.settings, token):
        return True
    try:
        async with asyncio.timeout(within), read_uow(runtime.read_session_factory) as session:
            caller = await principal.authenticate(
                session,
                codec=runtime.tokens,
                token=token,
                idle_timeout=runtime.idle_timeout,
                now=datetime.now(UTC),
                record_use=False,
            )
    except (TablehouseError, SQLAlchemyError, OSError, TimeoutError):
        return False
    return caller.is_admin and caller.session_id is not None
