"""Account tables. Secrets are never stored: tokens and keys as SHA-256, passwords as argon2id."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tablehouse.core.models import Base, TimestampMixin, UUIDPrimaryKey

SHA256_HEX = 64


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


class Scope(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    QUERY = "query"


class TokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


def _enum(kind: type[enum.StrEnum], name: str) -> Enum:
    # Stored as plain strings with a CHECK: the same on both backends, easy to extend.
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )


class User(UUIDPrimaryKey, TimestampMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"), default=Role.USER)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    last_login_at: Mapped[datetime | None]

    sessions: Mapped[list[AuthSession]] = relationship(
        back_populates="user", lazy="raise", passive_deletes=True
    )


class AuthSession(UUIDPrimaryKey, TimestampMixin, Base):
    """One login. Holds hashes of the current token pair; refresh rotates them."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user_active", "user_id", "is_revoked"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    access_token_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    refresh_token_hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    # Rotations so far; retired refresh tokens are kept in RefreshTokenHistory.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # When the last rotation happened, and the pair it issued, encrypted with a key derived
    # from the token it replaced: a client replaying that token within the grace window
    # (it lost our response) gets the same pair back, yet no token is stored readable.
    rotated_at: Mapped[datetime | None]
    sealed_current_pair: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime]
    idle_expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime]
    is_revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_reason: Mapped[str | None] = mapped_column(String(40))
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))

    user: Mapped[User] = relationship(back_populates="sessions", lazy="raise")


class RefreshTokenHistory(UUIDPrimaryKey, Base):
    """A refresh token its session has rotated away from; presenting it again is reuse."""

    __tablename__ = "refresh_token_history"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    generation: Mapped[int] = mapped_column(Integer)
    retired_at: Mapped[datetime]


class ApiKey(UUIDPrimaryKey, TimestampMixin, Base):
    __tablename__ = "api_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # None: every dataset of the owner; otherwise only the datasets named here.
    dataset_names: Mapped[list[str] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="raise")


class OneTimeToken(UUIDPrimaryKey, TimestampMixin, Base):
    """Email verification and password reset tokens: hashed, expiring, single use."""

    __tablename__ = "one_time_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[TokenPurpose] = mapped_column(_enum(TokenPurpose, "token_purpose"))
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class LoginFailure(UUIDPrimaryKey, Base):
    """One failed login, counted against its account and its client address.

    Rows older than the window are ignored and swept; a sliding window needs the times.
    """

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_subject_time", "subject", "failed_at"),
        CheckConstraint("subject <> ''", name="subject_not_empty"),
    )

    subject: Mapped[str] = mapped_column(String(400))
    failed_at: Mapped[datetime] = mapped_column(index=True)
