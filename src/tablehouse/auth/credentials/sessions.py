"""Logging in (a login session and its token pair), and refresh-token rotation with reuse
detection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag

from tablehouse.auth import repository
from tablehouse.auth.credentials import throttle
from tablehouse.auth.credentials.authentication import ensure_session_usable
from tablehouse.auth.models import AuthSession, RefreshTokenHistory, User
from tablehouse.auth.schemas import Client, TokenPair
from tablehouse.config import Settings
from tablehouse.core.database import WriteSession
from tablehouse.core.security.passwords import Passwords
from tablehouse.core.security.tokens import (
    TokenCodec,
    hash_token,
    new_opaque_token,
    seal,
    unseal,
)
from tablehouse.errors import Forbidden, NotAuthenticated


class InvalidCredentials(NotAuthenticated):
    """Unknown email or wrong password: one answer for both. The failure is counted."""

    keeps_changes = True

    def __init__(self) -> None:
        super().__init__("incorrect email or password", code="invalid_credentials")


class RefreshTokenReused(NotAuthenticated):
    """A rotated-away refresh token came back: the session is revoked, and that sticks."""

    keeps_changes = True

    def __init__(self) -> None:
        super().__init__(
            "this refresh token was already used; the session has been revoked for safety",
            code="refresh_token_reused",
        )


@dataclass(frozen=True, slots=True)
class Issuer:
    """What issuing tokens needs: the codec and the lifetimes from settings."""

    codec: TokenCodec
    settings: Settings

    @property
    def idle_timeout(self) -> timedelta:
        return timedelta(minutes=self.settings.session_idle_timeout_minutes)

    def pair(self, *, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime) -> TokenPair:
        return TokenPair(
            access_token=self.codec.issue(user_id=user_id, session_id=session_id, now=now),
            refresh_token=new_opaque_token(),
            expires_in=int(self.codec.lifetime.total_seconds()),
        )


async def login(
    session: WriteSession,
    *,
    issuer: Issuer,
    passwords: Passwords,
    email: str,
    password: str,
    client: Client,
    now: datetime,
) -> TokenPair:
    """``email`` normalised already. Refused before the password is checked if throttled."""
    settings = issuer.settings
    await throttle.ensure_allowed(session, settings, email=email, address=client.address, now=now)
    user = await repository.user_by_email(session, email)
    if user is None:
        await passwords.waste_time(password)
        verified, new_hash = False, None
    else:
        verified, new_hash = await passwords.verify(password, user.password_hash)
    if user is None or not verified:
        await throttle.record_failure(
            session, settings, email=email, address=client.address, now=now
        )
        raise InvalidCredentials()
    if not user.is_active:
        raise Forbidden("this account is deactivated", code="account_inactive")
    if new_hash is not None:
        user.password_hash = new_hash
    user.last_login_at = now
    await throttle.forget_login_failures(session, email, client.address)
    return await open_session(session, issuer=issuer, user=user, client=client, now=now)


async def open_session(
    session: WriteSession, *, issuer: Issuer, user: User, client: Client, now: datetime
) -> TokenPair:
    session_id = uuid.uuid4()
    pair = issuer.pair(user_id=user.id, session_id=session_id, now=now)
    await repository.add(
        session,
        AuthSession(
            id=session_id,
            user_id=user.id,
            access_token_hash=hash_token(pair.access_token),
            refresh_token_hash=hash_token(pair.refresh_token),
            expires_at=now + timedelta(days=issuer.settings.refresh_token_ttl_days),
            idle_expires_at=now + issuer.idle_timeout,
            last_used_at=now,
            client_address=client.address,
            user_agent=client.user_agent[:400] if client.user_agent else None,
        ),
    )
    return pair


async def refresh(
    session: WriteSession, *, issuer: Issuer, refresh_token: str, now: datetime
) -> TokenPair:
    token_hash = hash_token(refresh_token)
    login = await repository.session_by_refresh_hash(session, token_hash)
    if login is not None:
        ensure_session_usable(login, now)
        pair = issuer.pair(user_id=login.user_id, session_id=login.id, now=now)
        rotated = await repository.rotate_session(
            session,
            session_id=login.id,
            expected_refresh_hash=token_hash,
            values={
                "access_token_hash": hash_token(pair.access_token),
                "refresh_token_hash": hash_token(pair.refresh_token),
                "rotated_at": now,
                "sealed_current_pair": seal(
                    pair.model_dump(), key_material=refresh_token, context=login.id.bytes
                ),
                "last_used_at": now,
                "idle_expires_at": now + issuer.idle_timeout,
            },
        )
        if rotated:
            await repository.add(
                session,
                RefreshTokenHistory(
                    session_id=login.id,
                    token_hash=token_hash,
                    generation=login.generation,
                    retired_at=now,
                ),
            )
            return pair
        # Another request rotated this very token a moment ago: treat ours as a replay.
    return await _replayed(session, issuer=issuer, refresh_token=refresh_token, now=now)


async def _replayed(
    session: WriteSession, *, issuer: Issuer, refresh_token: str, now: datetime
) -> TokenPair:
    retired = await repository.retired_refresh_token(session, hash_token(refresh_token))
    if retired is None:
        raise NotAuthenticated("invalid refresh token", code="invalid_token")
    login = await repository.session_with_user(session, retired.session_id, fresh=True)
    if login is None or login.is_revoked:
        raise NotAuthenticated("this session has been signed out", code="session_revoked")
    grace = timedelta(seconds=issuer.settings.refresh_reuse_grace_seconds)
    just_replaced = (
        retired.generation == login.generation - 1
        and login.rotated_at is not None
        and now - login.rotated_at <= grace
        and login.sealed_current_pair is not None
    )
    if just_replaced:
        assert login.sealed_current_pair is not None
        try:
            current = unseal(
                login.sealed_current_pair, key_material=refresh_token, context=login.id.bytes
            )
        except InvalidTag:
            pass
        else:
            return TokenPair.model_validate(current)
    await repository.revoke_sessions(
        session, user_id=login.user_id, session_id=login.id, reason="refresh_token_reused"
    )
    raise RefreshTokenReused()
