"""Who is calling, and what time it is: reusable dependencies for every router that needs them.

There is one way a request is authenticated, ``authenticate`` below, on the runtime's clock:
the dependencies (``CurrentPrincipal``, the scopes, ``require_scope_before_body``) and
``is_operator`` all go through it.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, cast

import structlog
from fastapi import BackgroundTasks, Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.exc import SQLAlchemyError

from tablehouse.api.dependencies import RequestSession, RuntimeDep
from tablehouse.api.runtime import Runtime
from tablehouse.auth import service
from tablehouse.auth.models import Scope
from tablehouse.auth.principal import Principal
from tablehouse.auth.schemas import Client
from tablehouse.config import Settings
from tablehouse.core.database import ReadSession, read_uow, uow
from tablehouse.core.mail import MailDeliveryError, Mailer, MailMessage
from tablehouse.errors import Forbidden, NotAuthenticated, TablehouseError

log = structlog.get_logger(__name__)

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

BearerToken = Annotated[str | None, Depends(bearer)]


def _runtime(request: Request) -> Runtime:
    # Straight from the app, not as a dependency: one fewer to resolve per request.
    return cast(Runtime, request.app.state.runtime)


async def current_time(request: Request) -> datetime:
    """The runtime's clock (``create_app(clock=...)``), read once for the request."""
    return _runtime(request).clock()


Now = Annotated[datetime, Depends(current_time)]


async def get_client(request: Request) -> Client:
    return Client(
        address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


ClientDep = Annotated[Client, Depends(get_client)]


async def authenticate(runtime: Runtime, session: ReadSession, token: str | None) -> Principal:
    """The one way a request's caller is known: the bearer ``token`` checked at the runtime's
    clock. Its use is recorded when ``session`` may write (``service.authenticate``)."""
    if not token:
        raise NotAuthenticated("sign in: send 'Authorization: Bearer <token>'")
    return await service.authenticate(session, runtime, token=token, now=runtime.clock())


# Every authenticated request resolves this, so it takes as few dependencies as it can (each
# costs FastAPI some work per request): the request's session and the bearer token.
async def current_principal(
    request: Request, session: RequestSession, token: BearerToken
) -> Principal:
    """The caller."""
    return await authenticate(_runtime(request), session, token)


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


def _holding(scope: Scope, caller: Principal) -> Principal:
    if scope not in caller.scopes:
        raise Forbidden(f"this API key lacks the '{scope}' scope", code="scope_required")
    return caller


def require_scope(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """The caller, who must hold ``scope`` (a login session holds every scope)."""

    async def check(request: Request, session: RequestSession, token: BearerToken) -> Principal:
        return _holding(scope, await authenticate(_runtime(request), session, token))

    return check


def require_scope_before_body(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """The caller, who must hold ``scope``, checked in a unit of work of its own that ends
    before the handler runs: for a handler that waits for a long body before it touches the
    database, so that no lock or pooled connection is held while the client sends it."""

    async def check(request: Request, token: BearerToken) -> Principal:
        runtime = _runtime(request)
        async with uow(runtime.session_factory) as session:
            caller = await authenticate(runtime, session, token)
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
            caller = await authenticate(runtime, session, token)
    except (TablehouseError, SQLAlchemyError, OSError, TimeoutError):
        return False
    return caller.is_admin and caller.session_id is not None


@dataclass(frozen=True, slots=True)
class MailAfterResponse:
    """Account mail, sent once the response has gone: its timing reveals nothing (whether an
    address has an account), and a failed delivery is logged, never the request's failure."""

    tasks: BackgroundTasks
    mailer: Mailer

    def send(self, message: MailMessage | None) -> None:
        if message is not None:
            self.tasks.add_task(_deliver, self.mailer, message)


async def _deliver(mailer: Mailer, message: MailMessage) -> None:
    try:
        await mailer.send(message)
    except MailDeliveryError as exc:
        log.error("mail.failed", to=message.to, subject=message.subject, error=str(exc))


async def get_mail_after_response(tasks: BackgroundTasks, runtime: RuntimeDep) -> MailAfterResponse:
    return MailAfterResponse(tasks, runtime.mailer)


MailAfterResponseDep = Annotated[MailAfterResponse, Depends(get_mail_after_response)]
