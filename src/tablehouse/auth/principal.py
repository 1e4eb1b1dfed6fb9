"""Who is making a request: a user behind a login session or behind an API key."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.auth import repository
from tablehouse.auth.identity import Account, Login
from tablehouse.auth.models import Role, Scope
from tablehouse.core.tokens import TokenCodec, hash_token
from tablehouse.errors import Forbidden, NotAuthenticated

API_KEY_MARKER = "th_"
ALL_SCOPES = frozenset(Scope)
# Last-use times are for people reading session lists; a write per request would be waste.
TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    user: Account
    scopes: frozenset[Scope]
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    datasets: frozenset[str] | None = None  # None: all of the user's datasets

    @property
    def is_admin(self) -> bool:
        return self.user.role == Role.ADMIN

    def may_use_dataset(self, name: str) -> bool:
        return self.datasets is None or name in self.datasets


async def from_access_token(
    session: AsyncSession,
    *,
    codec: TokenCodec,
    token: str,
    idle_timeout: timedelta,
    now: datetime,
    record_use: bool = True,
) -> Principal:
    """The session is read on every request, so a logout, a revocation or a password change
    takes effect on the very next one."""
    claims = codec.decode(token)
    login = await repository.session_credential(session, claims.session_id)
    if (
        login is None
        or login.user_id != claims.user_id
        or not hmac.compare_digest(login.access_token_hash, hash_token(token))
    ):
        raise NotAuthenticated("this access token is no longer valid", code="invalid_token")
    ensure_session_usable(login, now)
    if record_use and now - login.last_used_at >= TOUCH_INTERVAL:
        await repository.touch_session(
            session, login.id, now=now, idle_expires_at=now + idle_timeout
        )
    return Principal(user=login.user, scopes=ALL_SCOPES, session_id=login.id)


def ensure_session_usable(login: Login, now: datetime) -> None:
    if login.is_revoked:
        raise NotAuthenticated("this session has been signed out", code="session_revoked")
    if login.expires_at <= now or login.idle_expires_at <= now:
        raise NotAuthenticated("this session has expired; log in again", code="session_expired")
    if not login.user.is_active:
        raise Forbidden("this account is deactivated", code="account_inactive")


async def from_api_key(
    session: AsyncSession, *, key: str, now: datetime, record_use: bool = True
) -> Principal:
    invalid = NotAuthenticated("invalid API key", code="invalid_api_key")
    prefix, _, secret = key.removeprefix(API_KEY_MARKER).partition("_")
    if not prefix or not secret:
        raise invalid
    api_key = await repository.api_key_credential(session, prefix)
    if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_token(key)):
        raise invalid
    if api_key.revoked_at is not None:
        raise NotAuthenticated("this API key has been revoked", code="api_key_revoked")
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise NotAuthenticated("this API key has expired", code="api_key_expired")
    if not api_key.user.is_active:
        raise Forbidden("this account is deactivated", code="account_inactive")
    if record_use and (
        api_key.last_used_at is None or now - api_key.last_used_at >= TOUCH_INTERVAL
    ):
        await repository.touch_api_key(session, api_key.id, now=now)
    return Principal(
        user=api_key.user,
        scopes=frozenset(Scope(scope) for scope in api_key.scopes),
        api_key_id=api_key.id,
        datasets=None if api_key.dataset_names is None else frozenset(api_key.dataset_names),
    )


async def authenticate(
    session: AsyncSession,
    *,
    codec: TokenCodec,
    token: str,
    idle_timeout: timedelta,
    now: datetime,
    record_use: bool = True,
) -> Principal:
    """Who sent ``token``. ``record_use`` writes "last used" (at most once a minute); read
    requests skip it so they never wait for a writer. Sessions stay alive through their
    refreshes, which always record use."""
    if token.startswith(API_KEY_MARKER):
        return await from_api_key(session, key=token, now=now, record_use=record_use)
    return await from_access_token(
        session,
        codec=codec,
        token=token,
        idle_timeout=idle_timeout,
        now=now,
        record_use=record_use,
    )
