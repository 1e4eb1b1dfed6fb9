"""One-time tokens sent by mail (email verification, password reset): issued with their
message, stored as a hash, and claimed once before they expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tablehouse.auth import repository
from tablehouse.auth.models import OneTimeToken, TokenPurpose, User
from tablehouse.config import Settings
from tablehouse.core.database import WriteSession
from tablehouse.core.mail import MailMessage
from tablehouse.core.security.tokens import hash_token, new_opaque_token
from tablehouse.errors import BadRequest


@dataclass(frozen=True, slots=True)
class EmailToken:
    """A one-time token to mail to ``user``; the plaintext exists only until it is sent."""

    user: User
    token: str


async def issue(
    session: WriteSession, *, settings: Settings, user: User, purpose: TokenPurpose, now: datetime
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


async def claim(session: WriteSession, *, token: str, purpose: TokenPurpose, now: datetime) -> User:
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
