"""Accounts: registration, profile, email verification, password reset, administration."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.auth import repository, throttle
from tablehouse.auth.identity import Account
from tablehouse.auth.models import OneTimeToken, Role, TokenPurpose, User
from tablehouse.auth.schemas import AdminUserUpdate, UpdateMe
from tablehouse.config import Settings
from tablehouse.core import query_roles
from tablehouse.core.mailer import MailMessage
from tablehouse.core.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Passwords
from tablehouse.core.tokens import hash_token, new_opaque_token
from tablehouse.errors import BadRequest, Conflict, InvalidInput, NotFound


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_password_policy(password: str, *, email: str, field: str = "password") -> None:
    """8 to 128 characters, and not the email address. Checked before anything is hashed."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"must be at least {MIN_PASSWORD_LENGTH} characters",
            loc=("body", field),
            code="password_too_short",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"must be at most {MAX_PASSWORD_LENGTH} characters",
            loc=("body", field),
            code="password_too_long",
        )
    if password.strip().lower() == normalise_email(email):
        raise InvalidInput(
            "must not be your email address", loc=("body", field), code="password_is_email"
        )


async def register(
    session: AsyncSession,
    *,
    passwords: Passwords,
    email: str,
    password: str,
    full_name: str | None,
    role: Role = Role.USER,
) -> User:
    """A new account; ``register_and_verify`` is the API's way in, this one the CLI's."""
    email = normalise_email(email)
    check_password_policy(password, email=email)
    if await repository.user_by_email(session, email) is not None:
        raise Conflict("an account with this email already exists", code="email_taken")
    user = User(
        email=email, full_name=full_name, password_hash=await passwords.hash(password), role=role
    )
    try:
        await repository.add(session, user)
    except IntegrityError:  # registered by a concurrent request since the check above
        raise Conflict("an account with this email already exists", code="email_taken") from None
    return user


async def ensure_admin(
    session: AsyncSession, *, passwords: Passwords, email: str, password: str
) -> bool:
    """Create the administrator named in settings; ``False`` if that admin exists already.

    An existing account that is not an admin is refused rather than promoted: whoever
    registered that address first would otherwise be handed the keys.
    """
    existing = await repository.user_by_email(session, normalise_email(email))
    if existing is not None:
        if existing.role != Role.ADMIN:
            raise Conflict(
                f"{existing.email} is an existing account that is not an admin; it was left "
                "unchanged. Choose another ADMIN_EMAIL, or delete or promote that account.",
                code="not_an_admin",
            )
        return False
    user = await register(
        session,
        passwords=passwords,
        email=email,
        password=password,
        full_name=None,
        role=Role.ADMIN,
    )
    user.is_verified = True
    return True


async def register_and_verify(
    session: AsyncSession,
    *,
    settings: Settings,
    passwords: Passwords,
    email: str,
    password: str,
    full_name: str | None,
    now: datetime,
) -> EmailToken:
    """Register, and issue the token for the verification mail to send after commit."""
    user = await register(
        session, passwords=passwords, email=email, password=password, full_name=full_name
    )
    return await issue_email_token(
        session, settings=settings, user=user, purpose=TokenPurpose.VERIFY_EMAIL, now=now
    )


async def update_me(
    session: AsyncSession,
    *,
    passwords: Passwords,
    user: Account,
    changes: UpdateMe,
    current_session_id: uuid.UUID | None,
) -> User:
    """``user`` is the caller as authenticated; their row is loaded here to be changed."""
    stored = await get_user(session, user.id)
    if changes.full_name is not None:
        stored.full_name = changes.full_name
    if changes.password is not None:
        await _change_password(session, passwords, stored, changes, current_session_id)
    await session.flush()
    return stored


async def _change_password(
    session: AsyncSession,
    passwords: Passwords,
    user: User,
    changes: UpdateMe,
    current_session_id: uuid.UUID | None,
) -> None:
    assert changes.password is not None
    if changes.current_password is None:
        raise InvalidInput(
            "required to change the password", loc=("body", "current_password"), code="missing"
        )
    verified, _ = await passwords.verify(changes.current_password, user.password_hash)
    if not verified:
        raise InvalidInput(
            "is not your current password",
            loc=("body", "current_password"),
            code="wrong_password",
        )
    check_password_policy(changes.password, email=user.email)
    user.password_hash = await passwords.hash(changes.password)
    await repository.revoke_sessions(
        session, user_id=user.id, reason="password_changed", except_session_id=current_session_id
    )


@dataclass(frozen=True, slots=True)
class EmailToken:
    """A one-time token to mail to ``user``; the plaintext exists only until it is sent."""

    user: User
    token: str


async def issue_email_token(
    session: AsyncSession, *, settings: Settings, user: User, purpose: TokenPurpose, now: datetime
) -> EmailToken:
    lifetime = (
        timedelta(hours=settings.email_token_ttl_hours)
        if purpose == TokenPurpose.VERIFY_EMAIL
        else timedelta(minutes=settings.password_reset_ttl_minutes)
    )
    token = new_opaque_token()
    await repository.add(
        session,
        OneTimeToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=hash_token(token),
            expires_at=now + lifetime,
        ),
    )
    return EmailToken(user=user, token=token)


async def request_verification(
    session: AsyncSession, *, settings: Settings, email: str, now: datetime
) -> EmailToken | None:
    user = await repository.user_by_email(session, normalise_email(email))
    if user is None or user.is_verified or not user.is_active:
        return None
    return await issue_email_token(
        session, settings=settings, user=user, purpose=TokenPurpose.VERIFY_EMAIL, now=now
    )


async def confirm_verification(session: AsyncSession, *, token: str, now: datetime) -> User:
    user = await _claim(session, token=token, purpose=TokenPurpose.VERIFY_EMAIL, now=now)
    user.is_verified = True
    await session.flush()
    return user


async def request_password_reset(
    session: AsyncSession, *, settings: Settings, email: str, now: datetime
) -> EmailToken | None:
    user = await repository.user_by_email(session, normalise_email(email))
    if user is None or not user.is_active:
        return None
    return await issue_email_token(
        session, settings=settings, user=user, purpose=TokenPurpose.RESET_PASSWORD, now=now
    )


async def confirm_password_reset(
    session: AsyncSession, *, passwords: Passwords, token: str, new_password: str, now: datetime
) -> None:
    user = await _claim(session, token=token, purpose=TokenPurpose.RESET_PASSWORD, now=now)
    check_password_policy(new_password, email=user.email, field="new_password")
    user.password_hash = await passwords.hash(new_password)
    await repository.revoke_sessions(session, user_id=user.id, reason="password_reset")
    await throttle.forget_account_failures(session, user.email)
    await session.flush()


async def _claim(
    session: AsyncSession, *, token: str, purpose: TokenPurpose, now: datetime
) -> User:
    user_id = await repository.claim_one_time_token(
        session, token_hash=hash_token(token), purpose=purpose, now=now
    )
    user = None if user_id is None else await repository.user_by_id(session, user_id)
    if user is None:
        raise BadRequest("this link is invalid, used or expired", code="invalid_token")
    return user


def verification_message(settings: Settings, sent: EmailToken) -> MailMessage:
    api = f"{settings.public_url.rstrip('/')}/api/v1/auth"
    return MailMessage(
        to=sent.user.email,
        subject="Confirm your Tablehouse email address",
        body=(
            "Confirm this address for your Tablehouse account by opening:\n\n"
            f"{api}/verify/confirm?token={sent.token}\n\n"
            'or by sending this token as {"token": ...} to POST /api/v1/auth/verify/confirm:'
            f"\n\n{sent.token}\n\nIt expires in {settings.email_token_ttl_hours} hours.\n"
        ),
    )


def password_reset_message(settings: Settings, sent: EmailToken) -> MailMessage:
    api = f"{settings.public_url.rstrip('/')}/api/v1/auth"
    return MailMessage(
        to=sent.user.email,
        subject="Reset your Tablehouse password",
        body=(
            "Someone asked to reset the password of your Tablehouse account. If it was you, "
            'send this token with your new password as {"token": ..., "new_password": ...} '
            f"to POST {api}/password-reset/confirm:\n\n{sent.token}\n\n"
            f"It expires in {settings.password_reset_ttl_minutes} minutes. If it was not you, "
            "ignore this message; your password is unchanged.\n"
        ),
    )


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await repository.user_by_id(session, user_id)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    return user


async def administer(
    session: AsyncSession, *, admin: Account, user_id: uuid.UUID, changes: AdminUserUpdate
) -> User:
    user = await get_user(session, user_id)
    if user.id == admin.id and (changes.is_active is False or changes.role == Role.USER):
        raise Conflict("admins cannot deactivate or demote themselves", code="cannot_change_self")
    for field in ("full_name", "role", "is_verified"):
        value = getattr(changes, field)
        if value is not None:
            setattr(user, field, value)
    if changes.is_active is not None and changes.is_active != user.is_active:
        user.is_active = changes.is_active
        if not user.is_active:
            await repository.revoke_sessions(session, user_id=user.id, reason="deactivated")
    await session.flush()
    return user


async def delete_user(
    session: AsyncSession, *, admin: Account, user_id: uuid.UUID, query_role: str | None = None
) -> None:
    """Delete the account; on PostgreSQL its query role (of QUERY_DATABASE_ROLE
    ``query_role``) goes with it, in the same transaction."""
    user = await get_user(session, user_id)
    if user.id == admin.id:
        raise Conflict("admins cannot delete themselves", code="cannot_change_self")
    await session.delete(user)
    await session.flush()
    if query_role is not None:
        role = query_roles.owner_role(query_role, user_id)
        await session.run_sync(lambda sync: _drop_role(sync.connection(), role))


def _drop_role(connection: Connection, role: str) -> None:
    if connection.dialect.name == "postgresql":
        query_roles.drop(connection, role)


async def deactivate(session: AsyncSession, *, email: str) -> User:
    user = await repository.user_by_email(session, normalise_email(email))
    if user is None:
        raise NotFound(f"no user with email {email}", code="user_not_found")
    user.is_active = False
    await repository.revoke_sessions(session, user_id=user.id, reason="deactivated")
    await session.flush()
    return user
