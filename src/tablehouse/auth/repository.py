"""Every account query. Functions take a session and flush; they never commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from tablehouse.auth.models import (
    ApiKey,
    AuthSession,
    LoginFailure,
    OneTimeToken,
    RefreshTokenHistory,
    Role,
    TokenPurpose,
    User,
)


def _rowcount(result: Result[Any]) -> int:
    # UPDATE and DELETE give a CursorResult, which knows how many rows matched.
    return int(cast(CursorResult[Any], result).rowcount)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def user_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def list_users(
    session: AsyncSession,
    *,
    limit: int,
    offset: int,
    email_contains: str | None = None,
    role: Role | None = None,
    is_active: bool | None = None,
) -> tuple[list[User], int]:
    query = select(User)
    if email_contains:
        query = query.where(User.email.contains(email_contains.lower(), autoescape=True))
    if role is not None:
        query = query.where(User.role == role)
    if is_active is not None:
        query = query.where(User.is_active == is_active)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    page = await session.scalars(
        query.order_by(User.created_at, User.id).limit(limit).offset(offset)
    )
    return list(page), int(total or 0)


async def add(session: AsyncSession, row: object) -> None:
    session.add(row)
    await session.flush()


# Every authenticated request runs one of these two: built once, not per request.
_SESSION_WITH_USER = (
    select(AuthSession)
    .options(joinedload(AuthSession.user))
    .where(AuthSession.id == bindparam("session_id"))
)
_API_KEY_WITH_USER = (
    select(ApiKey).options(joinedload(ApiKey.user)).where(ApiKey.prefix == bindparam("prefix"))
)


async def session_with_user(
    session: AsyncSession, session_id: uuid.UUID, *, fresh: bool = False
) -> AuthSession | None:
    """``fresh`` re-reads a row this session may hold already (another request changed it)."""
    statement = (
        _SESSION_WITH_USER.execution_options(populate_existing=True)
        if fresh
        else _SESSION_WITH_USER
    )
    return await session.scalar(statement, {"session_id": session_id})


async def session_by_refresh_hash(session: AsyncSession, token_hash: str) -> AuthSession | None:
    return await session.scalar(
        select(AuthSession)
        .options(joinedload(AuthSession.user))
        .where(AuthSession.refresh_token_hash == token_hash)
    )


async def retired_refresh_token(
    session: AsyncSession, token_hash: str
) -> RefreshTokenHistory | None:
    return await session.scalar(
        select(RefreshTokenHistory).where(RefreshTokenHistory.token_hash == token_hash)
    )


async def rotate_session(
    session: AsyncSession,
    *,
    session_id: uuid.UUID,
    expected_refresh_hash: str,
    values: dict[str, object],
) -> bool:
    """Swap in a new token pair only if the session still holds the expected refresh token.

    Compare-and-set in one UPDATE, so of two concurrent refreshes exactly one rotates.
    """
    result = await session.execute(
        update(AuthSession)
        .where(
            AuthSession.id == session_id,
            AuthSession.refresh_token_hash == expected_refresh_hash,
            AuthSession.is_revoked.is_(False),
        )
        .values(generation=AuthSession.generation + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def active_sessions(
    session: AsyncSession, user_id: uuid.UUID, now: datetime
) -> list[AuthSession]:
    rows = await session.scalars(
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.is_revoked.is_(False),
            AuthSession.expires_at > now,
            AuthSession.idle_expires_at > now,
        )
        .order_by(AuthSession.last_used_at.desc())
    )
    return list(rows)


async def revoke_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    reason: str,
    session_id: uuid.UUID | None = None,
    except_session_id: uuid.UUID | None = None,
) -> int:
    query = update(AuthSession).where(
        AuthSession.user_id == user_id, AuthSession.is_revoked.is_(False)
    )
    if session_id is not None:
        query = query.where(AuthSession.id == session_id)
    if except_session_id is not None:
        query = query.where(AuthSession.id != except_session_id)
    result = await session.execute(
        query.values(is_revoked=True, revoked_reason=reason).execution_options(
            synchronize_session=False
        )
    )
    return _rowcount(result)


async def touch_session(
    session: AsyncSession, session_id: uuid.UUID, *, now: datetime, idle_expires_at: datetime
) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .values(last_used_at=now, idle_expires_at=idle_expires_at)
        .execution_options(synchronize_session=False)
    )


async def api_key_with_user(session: AsyncSession, prefix: str) -> ApiKey | None:
    return await session.scalar(_API_KEY_WITH_USER, {"prefix": prefix})


async def api_keys_of(session: AsyncSession, user_id: uuid.UUID) -> list[ApiKey]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc())
    )
    return list(rows)


async def api_key_of(session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
    )


async def claim_one_time_token(
    session: AsyncSession, *, token_hash: str, purpose: TokenPurpose, now: datetime
) -> uuid.UUID | None:
    """Mark a valid token used and return its user; ``None`` if it is unknown, used or expired.

    One UPDATE with the conditions in its WHERE, so a token cannot be used twice, even by
    two requests at once.
    """
    result = await session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.token_hash == token_hash,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(OneTimeToken.user_id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def count_failures(
    session: AsyncSession, subject: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many failures ``subject`` has had since ``since``, and the oldest of them."""
    row = (
        await session.execute(
            select(func.count(), func.min(LoginFailure.failed_at)).where(
                LoginFailure.subject == subject, LoginFailure.failed_at > since
            )
        )
    ).one()
    return int(row[0]), row[1]


async def clear_failures(session: AsyncSession, subject: str) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.subject == subject))


async def sweep_failures(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= before))
