"""The auth domain's rules, and the only module its router (and the CLI) calls: accounts
(registration, profile, email verification, password reset, administration), logging in and
login sessions, API keys, who sent a request, and login throttling. How credentials are
checked and issued is in ``auth.credentials``; every statement is in ``auth.repository``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from tablehouse.api.runtime import Runtime
from tablehouse.auth import repository
from tablehouse.auth.credentials import authentication, one_time_tokens, sessions, throttle
from tablehouse.auth.credentials.api_keys import new_api_key
from tablehouse.auth.models import ApiKey, Role, TokenPurpose, User
from tablehouse.auth.principal import ALL_SCOPES, Principal
from tablehouse.auth.schemas import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    AdminUserUpdate,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    Client,
    SessionRead,
    TokenPair,
    UpdateMe,
    UserRead,
)
from tablehouse.config import Settings
from tablehouse.core.database import ReadSession, WriteSession
from tablehouse.core.mail import MailMessage
from tablehouse.core.security.passwords import Passwords
from tablehouse.core.security.tokens import hash_token
from tablehouse.errors import Conflict, InvalidInput, NotFound


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
    session: WriteSession,
    *,
    passwords: Passwords,
    email: str,
    password: str,
    full_name: str | None,
    role: Role = Role.USER,
    verified: bool = False,
) -> UserRead:
    """A new account; ``register_and_verify`` is the API's way in, this one the CLI's (whoever
    runs it vouches for the address: ``verified``)."""
    return UserRead.model_validate(
        await _register(
            session,
            passwords=passwords,
            email=email,
            password=password,
            full_name=full_name,
            role=role,
            verified=verified,
        )
    )


async def _register(
    session: WriteSession,
    *,
    passwords: Passwords,
    email: str,
    password: str,
    full_name: str | None,
    role: Role = Role.USER,
    verified: bool = False,
) -> User:
    email = normalise_email(email)
    check_password_policy(password, email=email)
    if await repository.user_by_email(session, email) is not None:
        raise Conflict("an account with this email already exists", code="email_taken")
    user = User(
        email=email,
        full_name=full_name,
        password_hash=await passwords.hash(password),
        role=role,
        is_verified=verified,
    )
    try:
        await repository.add(session, user)
    except IntegrityError:  # registered by a concurrent request since the check above
        raise Conflict("an account with this email already exists", code="email_taken") from None
    return user


async def ensure_admin(
    session: WriteSession, *, passwords: Passwords, email: str, password: str
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
    await _register(
        session,
        passwords=passwords,
        email=email,
        password=password,
        full_name=None,
        role=Role.ADMIN,
        verified=True,
    )
    return True


@dataclass(frozen=True, slots=True)
class Registered:
    user: UserRead
    verification: MailMessage  # to send once the account is committed


async def register_and_verify(
    session: WriteSession,
    *,
    settings: Settings,
    passwords: Passwords,
    email: str,
    password: str,
    full_name: str | None,
    now: datetime,
) -> Registered:
    """Register, and write the verification mail to send after commit."""
    user = await _register(
        session, passwords=passwords, email=email, password=password, full_name=full_name
    )
    sent = await one_time_tokens.issue(
        session, settings=settings, user=user, purpose=TokenPurpose.VERIFY_EMAIL, now=now
    )
    return Registered(
        UserRead.model_validate(user), one_time_tokens.verification_message(settings, sent)
    )


async def update_me(
    session: WriteSession, *, passwords: Passwords, caller: Principal, changes: UpdateMe
) -> UserRead:
    """The caller's row is loaded here to be changed."""
    stored = await _stored_user(session, caller.user.id)
    if changes.full_name is not None:
        stored.full_name = changes.full_name
    if changes.password is not None:
        await _change_password(session, passwords, stored, changes, caller.session_id)
    await repository.save(session)
    return UserRead.model_validate(stored)


async def _change_password(
    session: WriteSession,
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


async def request_verification(
    session: WriteSession, *, settings: Settings, email: str, now: datetime
) -> MailMessage | None:
    """The verification mail to send after commit, if ``email`` is an unverified account."""
    user = await repository.user_by_email(session, normalise_email(email))
    if user is None or user.is_verified or not user.is_active:
        return None
    sent = await one_time_tokens.issue(
        session, settings=settings, user=user, purpose=TokenPurpose.VERIFY_EMAIL, now=now
    )
    return one_time_tokens.verification_message(settings, sent)


async def confirm_verification(session: WriteSession, *, token: str, now: datetime) -> UserRead:
    user = await one_time_tokens.claim(
        session, token=token, purpose=TokenPurpose.VERIFY_EMAIL, now=now
    )
    user.is_verified = True
    await repository.save(session)
    return UserRead.model_validate(user)


async def request_password_reset(
    session: WriteSession, *, settings: Settings, email: str, now: datetime
) -> MailMessage | None:
    """The reset mail to send after commit, if ``email`` is an active account."""
    user = await repository.user_by_email(session, normalise_email(email))
    if user is None or not user.is_active:
        return None
    sent = await one_time_tokens.issue(
        session, settings=settings, user=user, purpose=TokenPurpose.RESET_PASSWORD, now=now
    )
    return one_time_tokens.password_reset_message(settings, sent)


async def confirm_password_reset(
    session: WriteSession, *, passwords: Passwords, token: str, new_password: str, now: datetime
) -> None:
    user = await one_time_tokens.claim(
        session, token=token, purpose=TokenPurpose.RESET_PASSWORD, now=now
    )
    check_password_policy(new_password, email=user.email, field="new_password")
    user.password_hash = await passwords.hash(new_password)
    await repository.revoke_sessions(session, user_id=user.id, reason="password_reset")
    await throttle.forget_account_failures(session, user.email)
    await repository.save(session)


async def get_user(session: ReadSession, user_id: uuid.UUID) -> UserRead:
    return UserRead.model_validate(await _stored_user(session, user_id))


async def _stored_user(session: ReadSession, user_id: uuid.UUID) -> User:
    user = await repository.user_by_id(session, user_id)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    return user


async def list_users(
    session: ReadSession,
    *,
    limit: int,
    offset: int,
    email_contains: str | None = None,
    role: Role | None = None,
    is_active: bool | None = None,
) -> tuple[list[UserRead], int]:
    """A page of users, oldest first, and how many match in all."""
    users, total = await repository.list_users(
        session,
        limit=limit,
        offset=offset,
        email_contains=email_contains,
        role=role,
        is_active=is_active,
    )
    return [UserRead.model_validate(user) for user in users], total


async def administer(
    session: WriteSession, *, admin: UserRead, user_id: uuid.UUID, changes: AdminUserUpdate
) -> UserRead:
    user = await _stored_user(session, user_id)
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
    await repository.save(session)
    return UserRead.model_validate(user)


async def delete_user(
    session: WriteSession, *, admin: UserRead, user_id: uuid.UUID, query_role: str | None = None
) -> None:
    """Delete the account; on PostgreSQL its query role (of QUERY_DATABASE_ROLE
    ``query_role``) goes with it, in the same transaction."""
    user = await _stored_user(session, user_id)
    if user.id == admin.id:
        raise Conflict("admins cannot delete themselves", code="cannot_change_self")
    await repository.delete_user(session, user, query_role=query_role)


async def deactivate(session: WriteSession, *, email: str) -> UserRead:
    user = await repository.user_by_email(session, normalise_email(email))
    if user is None:
        raise NotFound(f"no user with email {email}", code="user_not_found")
    user.is_active = False
    await repository.revoke_sessions(session, user_id=user.id, reason="deactivated")
    await repository.save(session)
    return UserRead.model_validate(user)


async def user_by_email(session: ReadSession, email: str) -> UserRead | None:
    """The account with ``email`` (normalised here), for the CLI's ``--owner`` and ``--user``."""
    return await repository.user_read_by_email(session, normalise_email(email))


async def emails_of(session: ReadSession, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The email of each of ``user_ids`` that still exists."""
    users = [await repository.user_by_id(session, user_id) for user_id in sorted(set(user_ids))]
    return {user.id: user.email for user in users if user is not None}


def acting_as(user: UserRead) -> Principal:
    """``user`` with every scope, as the CLI acts for an account."""
    return Principal(user=user, scopes=ALL_SCOPES)


# --- logging in, and login sessions ----------------------------------------------------------


def _issuer(runtime: Runtime) -> sessions.Issuer:
    return sessions.Issuer(codec=runtime.tokens, settings=runtime.settings)


async def login(
    session: WriteSession,
    runtime: Runtime,
    *,
    email: str,
    password: str,
    client: Client,
    now: datetime,
) -> TokenPair:
    """A new login session for the account with ``email`` and ``password``, and its tokens."""
    return await sessions.login(
        session,
        issuer=_issuer(runtime),
        passwords=runtime.passwords,
        email=normalise_email(email),
        password=password,
        client=client,
        now=now,
    )


async def refresh(
    session: WriteSession, runtime: Runtime, *, refresh_token: str, now: datetime
) -> TokenPair:
    return await sessions.refresh(
        session, issuer=_issuer(runtime), refresh_token=refresh_token, now=now
    )


async def logout(session: WriteSession, *, caller: Principal) -> None:
    """End the login session the caller signed in with."""
    assert caller.session_id is not None
    await repository.revoke_sessions(
        session, user_id=caller.user.id, session_id=caller.session_id, reason="logout"
    )


async def logout_everywhere(session: WriteSession, *, caller: Principal) -> None:
    await repository.revoke_sessions(session, user_id=caller.user.id, reason="logout_all")


async def active_sessions(
    session: ReadSession, *, caller: Principal, now: datetime
) -> list[SessionRead]:
    """The caller's login sessions still in use, the one they signed in with marked."""
    active = await repository.active_sessions(session, caller.user.id, now)
    return [
        SessionRead.model_validate(row).model_copy(update={"current": row.id == caller.session_id})
        for row in active
    ]


async def revoke_session(
    session: WriteSession, *, caller: Principal, session_id: uuid.UUID
) -> None:
    revoked = await repository.revoke_sessions(
        session, user_id=caller.user.id, session_id=session_id, reason="revoked_by_user"
    )
    if revoked == 0:
        raise NotFound("no such active session", code="session_not_found")


# --- who sent a request -----------------------------------------------------------------------


async def authenticate(
    session: ReadSession, runtime: Runtime, *, token: str, now: datetime
) -> Principal:
    """Who sent ``token``, an access token or an API key. Through a ``WriteSession`` its use
    is recorded too ("last used", at most once a minute); through a ``ReadSession`` it is not."""
    return await authentication.authenticate(
        session, codec=runtime.tokens, token=token, idle_timeout=runtime.idle_timeout, now=now
    )


# --- API keys ---------------------------------------------------------------------------------


async def create_api_key(
    session: WriteSession, *, owner: UserRead, request: ApiKeyCreate, now: datetime
) -> ApiKeyCreated:
    """A new key, returned in full this once; only its hash is stored."""
    if request.expires_at is not None and request.expires_at <= now:
        raise InvalidInput("must be in the future", loc=("body", "expires_at"), code="in_the_past")
    key, prefix = new_api_key()
    api_key = ApiKey(
        user_id=owner.id,
        name=request.name,
        prefix=prefix,
        key_hash=hash_token(key),
        scopes=sorted({scope.value for scope in request.scopes}),
        dataset_names=None if request.datasets is None else sorted(set(request.datasets)),
        expires_at=request.expires_at,
    )
    await repository.add(session, api_key)
    return ApiKeyCreated(**ApiKeyRead.model_validate(api_key).model_dump(), key=key)


async def api_keys_of(session: ReadSession, *, owner: UserRead) -> list[ApiKeyRead]:
    return [
        ApiKeyRead.model_validate(key) for key in await repository.api_keys_of(session, owner.id)
    ]


async def revoke_api_key(
    session: WriteSession, *, owner: UserRead, key_id: uuid.UUID, now: datetime
) -> None:
    api_key = await repository.api_key_of(session, owner.id, key_id)
    if api_key is None:
        raise NotFound("no such API key", code="api_key_not_found")
    if api_key.revoked_at is None:
        api_key.revoked_at = now
        await repository.save(session)


# --- login throttling, for operators -----------------------------------------------------------


async def throttled(
    session: ReadSession, settings: Settings, *, now: datetime, limit: int
) -> list[throttle.Counted]:
    """Emails and addresses with failed logins in the window, most first."""
    return await throttle.counted(session, settings, now=now, limit=limit)


async def unlock_email(session: WriteSession, email: str) -> int:
    """Forget the failed logins of ``email`` (normalised here), from every address."""
    return await throttle.unlock_account(session, normalise_email(email))


async def unlock_address(session: WriteSession, address: str) -> int:
    """Forget the failed logins from ``address``, for every email."""
    return await throttle.unlock_address(session, address)
