"""Who sent a request's bearer token: a user behind a login session or behind an API key.

Every authenticated request reads its credential and user with one Core query
(``repository.session_credential`` or ``repository.api_key_credential``): plain values, not
ORM objects, so that the check costs one round trip and no unit-of-work bookkeeping.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import Protocol

from tablehouse.auth import repository
from tablehouse.auth.credentials.api_keys import is_api_key, prefix_of
from tablehouse.auth.models import Scope
from tablehouse.auth.principal import ALL_SCOPES, Principal
from tablehouse.core.database import ReadSession, WriteSession
from tablehouse.core.security.tokens import TokenCodec, hash_token
from tablehouse.errors import Forbidden, NotAuthenticated

# Last-use times are for people reading session lists; a write per request would be waste.
TOUCH_INTERVAL = timedelta(minutes=1)


class _Holder(Protocol):
    @property
    def is_active(self) -> bool: ...


class Login(Protocol):
    """What decides whether a login session may still be used (``AuthSession`` has it too)."""

    @property
    def is_revoked(self) -> bool: ...
    @property
    def expires_at(self) -> datetime: ...
    @property
    def idle_expires_at(self) -> datetime: ...
    @property
    def user(self) -> _Holder: ...


def ensure_session_usable(login: Login, now: datetime) -> None:
    if login.is_revoked:
        raise NotAuthenticated("this session has been signed out", code="session_revoked")
    if login.expires_at <= now or login.idle_expires_at <= now:
        raise NotAuthenticated("this session has expired; log in again", code="session_expired")
    if not login.user.is_active:
        raise Forbidden("this account is deactivated", code="account_inactive")


async def authenticate(
    session: ReadSession, *, codec: TokenCodec, token: str, idle_timeout: timedelta, now: datetime
) -> Principal:
    """Who sent ``token``. In a unit of work that may write, its use is recorded ("last
    used", at most once a minute); one that only reads skips it, so it never waits for a
    writer. Sessions stay alive through their refreshes, which always record use."""
    if is_api_key(token):
        return await _from_api_key(session, key=token, now=now)
    return await _from_access_token(
        session, codec=codec, token=token, idle_timeout=idle_timeout, now=now
    )


async def _from_access_token(
    session: ReadSession, *, codec: TokenCodec, token: str, idle_timeout: timedelta, now: datetime
) -> Principal:
    """The session is read on every request, so a logout, a revocation or a password change
    takes effect on the very next one."""
    claims = codec.decode(token, now=now)
    login = await repository.session_credential(session, claims.session_id)
    if (
        login is None
        or login.user_id != claims.user_id
        or not hmac.compare_digest(login.access_token_hash, hash_token(token))
    ):
        raise NotAuthenticated("this access token is no longer valid", code="invalid_token")
    ensure_session_usable(login, now)
    if isinstance(session, WriteSession) and now - login.last_used_at >= TOUCH_INTERVAL:
        await repository.touch_session(
            session, login.id, now=now, idle_expires_at=now + idle_timeout
        )
    return Principal(user=login.user, scopes=ALL_SCOPES, session_id=login.id)


async def _from_api_key(session: ReadSession, *, key: str, now: datetime) -> Principal:
    invalid = NotAuthenticated("invalid API key", code="invalid_api_key")
    prefix = prefix_of(key)
    if prefix is None:
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
    if isinstance(session, WriteSession) and (
        api_key.last_used_at is None or now - api_key.last_used_at >= TOUCH_INTERVAL
    ):
        await repository.touch_api_key(session, api_key.id, now=now)
    return Principal(
        user=api_key.user,
        scopes=frozenset(Scope(scope) for scope in api_key.scopes),
        api_key_id=api_key.id,
        datasets=None if api_key.dataset_names is None else frozenset(api_key.dataset_names),
    )
