"""Every account query. Functions take a session and flush; they never commit. Those that
only read take a ``ReadSession``, those that write a ``WriteSession``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Result,
    bindparam,
    delete,
    func,
    select,
    update,
)
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
from tablehouse.auth.schemas import USER_FIELDS, UserRead
from tablehouse.core import driver, query_roles
from tablehouse.core.database import Backend, ReadSession, WriteSession, backend_of
from tablehouse.core.driver import FixedStatement


def _rowcount(result: Result[Any]) -> int:
    # UPDATE and DELETE give a CursorResult, which knows how many rows matched.
    return int(cast(CursorResult[Any], result).rowcount)


async def user_by_email(session: ReadSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def user_by_id(session: ReadSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def list_users(
    session: ReadSession,
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


async def add(session: WriteSession, row: object) -> None:
    session.add(row)
    await session.flush()


async def save(session: WriteSession) -> None:
    """Write the changes made to the rows this session loaded."""
    await session.flush()


async def delete_user(session: WriteSession, user: User, *, query_role: str | None) -> None:
    """Delete ``user`` (their rows go with them); on PostgreSQL their query role too, of
    QUERY_DATABASE_ROLE ``query_role``, in the same transaction."""
    await session.delete(user)
    await session.flush()
    if query_role is not None:
        role = query_roles.owner_role(query_role, user.id)
        await session.run_sync(lambda sync: _drop_role(sync.connection(), role))


def _drop_role(connection: Connection, role: str) -> None:
    if backend_of(connection) is Backend.POSTGRESQL:
        query_roles.drop(connection, role)


# Every authenticated request reads its credential and user with one of these two: Core
# statements built once and sent through the driver (core.driver: fixed statements every
# request runs), returning plain values (no ORM loading, no identity map), on the unit of
# work's connection. Each statement is built from the declared fields (the credential's
# dataclass, then UserRead's), each column the one of the field's name, and each row is read
# back by zipping it with those same names: no list of columns is written out by hand, so
# none can fall out of step with the fields (two same-typed columns swapped would swap values
# silently). The labels name the fields in the result too.
_users = User.__table__
_sessions = AuthSession.__table__
_api_keys = ApiKey.__table__
_USER_LABEL = "user__"  # user_id is a credential column already
_USER_COLUMNS = tuple(_users.c[name].label(_USER_LABEL + name) for name in USER_FIELDS)


@dataclass(frozen=True, slots=True)
class SessionCredential:
    """A login session as an access token is checked against it."""

    id: uuid.UUID
    user_id: uuid.UUID
    access_token_hash: str
    is_revoked: bool
    expires_at: datetime
    idle_expires_at: datetime
    last_used_at: datetime
    user: UserRead


@dataclass(frozen=True, slots=True)
class KeyCredential:
    """An API key as a request presenting it is checked against it."""

    id: uuid.UUID
    key_hash: str
    scopes: list[str]
    dataset_names: list[str] | None
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    user: UserRead


def _own_fields(credential: type[SessionCredential | KeyCredential]) -> tuple[str, ...]:
    return tuple(field.name for field in fields(credential) if field.name != "user")


_SESSION_FIELDS = _own_fields(SessionCredential)
_KEY_FIELDS = _own_fields(KeyCredential)
_SESSION_CREDENTIAL = FixedStatement(
    select(*(_sessions.c[name].label(name) for name in _SESSION_FIELDS), *_USER_COLUMNS)
    .join_from(_sessions, _users, _sessions.c.user_id == _users.c.id)
    .where(_sessions.c.id == bindparam("session_id"))
)
_KEY_CREDENTIAL = FixedStatement(
    select(*(_api_keys.c[name].label(name) for name in _KEY_FIELDS), *_USER_COLUMNS)
    .join_from(_api_keys, _users, _api_keys.c.user_id == _users.c.id)
    .where(_api_keys.c.prefix == bindparam("prefix"))
)


async def session_credential(
    session: ReadSession, session_id: uuid.UUID
) -> SessionCredential | None:
    """The login session ``session_id`` and its user, as an access token is checked."""
    rows = await driver.fetch(session, _SESSION_CREDENTIAL, {"session_id": session_id})
    if not rows:
        return None
    row = rows[0]
    own = len(_SESSION_FIELDS)
    return SessionCredential(
        **dict(zip(_SESSION_FIELDS, row[:own], strict=True)), user=_user(row[own:])
    )


async def api_key_credential(session: ReadSession, prefix: str) -> KeyCredential | None:
    """The API key with ``prefix`` and its user, as a request presenting it is checked."""
    rows = await driver.fetch(session, _KEY_CREDENTIAL, {"prefix": prefix})
    if not rows:
        return None
    row = rows[0]
    own = len(_KEY_FIELDS)
    return KeyCredential(**dict(zip(_KEY_FIELDS, row[:own], strict=True)), user=_user(row[own:]))


def _user(values: Sequence[Any]) -> UserRead:
    """A user from the values of ``_USER_COLUMNS``, in their order."""
    return UserRead.model_validate(dict(zip(USER_FIELDS, values, strict=True)))


async def user_read_by_email(session: ReadSession, email: str) -> UserRead | None:
    """The user with ``email``, as a request's caller is known (for the CLI's commands)."""
    row = (await session.execute(select(*_USER_COLUMNS).where(_users.c.email == email))).first()
    return None if row is None else _user(row)


async def touch_api_key(session: WriteSession, key_id: uuid.UUID, *, now: datetime) -> None:
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


# The refresh flow works on the ORM session row (it rotates it).
_SESSION_WITH_USER = (
    select(AuthSession)
    .options(joinedload(AuthSession.user))
    .where(AuthSession.id == bindparam("session_id"))
)


async def session_with_user(
    session: ReadSession, session_id: uuid.UUID, *, fresh: bool = False
) -> AuthSession | None:
    """``fresh`` re-reads a row this session may hold already (another request changed it)."""
    statement = (
        _SESSION_WITH_USER.execution_options(populate_existing=True)
        if fresh
        else _SESSION_WITH_USER
    )
    return await session.scalar(statement, {"session_id": session_id})


async def session_by_refresh_hash(session: ReadSession, token_hash: str) -> AuthSession | None:
    return await session.scalar(
        select(AuthSession)
        .options(joinedload(AuthSession.user))
        .where(AuthSession.refresh_token_hash == token_hash)
    )


async def retired_refresh_token(
    session: ReadSession, token_hash: str
) -> RefreshTokenHistory | None:
    return await session.scalar(
        select(RefreshTokenHistory).where(RefreshTokenHistory.token_hash == token_hash)
    )


async def rotate_session(
    session: WriteSession,
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
    session: ReadSession, user_id: uuid.UUID, now: datetime
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
    session: WriteSession,
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
    session: WriteSession, session_id: uuid.UUID, *, now: datetime, idle_expires_at: datetime
) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .values(last_used_at=now, idle_expires_at=idle_expires_at)
        .execution_options(synchronize_session=False)
    )


async def api_keys_of(session: ReadSession, user_id: uuid.UUID) -> list[ApiKey]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc())
    )
    return list(rows)


async def api_key_of(session: ReadSession, user_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
    )


async def claim_one_time_token(
    session: WriteSession, *, token_hash: str, purpose: TokenPurpose, now: datetime
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
    session: ReadSession, subject: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many failures ``subject`` has had since ``since``, and the newest of them."""
    row = (
        await session.execute(
            select(func.count(), func.max(LoginFailure.failed_at)).where(
                LoginFailure.subject == subject, LoginFailure.failed_at > since
            )
        )
    ).one()
    return int(row[0]), row[1]


async def failure_time(
    session: ReadSession, subject: str, since: datetime, position: int
) -> datetime | None:
    """When ``subject``'s failure at ``position`` (0 is the oldest) since ``since`` happened."""
    return (
        await session.execute(
            select(LoginFailure.failed_at)
            .where(LoginFailure.subject == subject, LoginFailure.failed_at > since)
            .order_by(LoginFailure.failed_at)
            .offset(position)
            .limit(1)
        )
    ).scalar_one_or_none()


async def failures_by_subject(
    session: ReadSession, since: datetime, *, limit: int, leave_out: str
) -> list[tuple[str, int]]:
    """Subjects with failures since ``since``, and how many, most first; not those that start
    with ``leave_out``."""
    count = func.count().label("failures")
    rows = await session.execute(
        select(LoginFailure.subject, count)
        .where(
            LoginFailure.failed_at > since,
            ~LoginFailure.subject.startswith(leave_out, autoescape=True),
        )
        .group_by(LoginFailure.subject)
        .order_by(count.desc(), LoginFailure.subject)
        .limit(limit)
    )
    return [(subject, int(failures)) for subject, failures in rows.tuples()]


async def clear_failures(session: WriteSession, subject: str) -> int:
    return _rowcount(
        await session.execute(delete(LoginFailure).where(LoginFailure.subject == subject))
    )


async def clear_failures_like(session: WriteSession, *, prefix: str = "", suffix: str = "") -> int:
    """Delete the failures whose subject starts with ``prefix`` and ends with ``suffix``."""
    result = await session.execute(
        delete(LoginFailure).where(
            LoginFailure.subject.startswith(prefix, autoescape=True),
            LoginFailure.subject.endswith(suffix, autoescape=True),
        )
    )
    return _rowcount(result)


async def add_failures(session: WriteSession, subjects: Iterable[str], *, now: datetime) -> None:
    session.add_all(LoginFailure(subject=subject, failed_at=now) for subject in subjects)
    await session.flush()


async def sweep_failures(session: WriteSession, before: datetime) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= before))
