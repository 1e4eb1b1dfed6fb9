"""What a request knows of its caller: the user, and the credential it was sent with.

Every authenticated request reads these with one Core query (``repository.session_credential``
or ``repository.api_key_credential``): plain values, not ORM objects, so that the check costs
one round trip and no unit-of-work bookkeeping. A service that changes the user loads the
ORM row itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tablehouse.auth.models import Role


class Account(Protocol):
    """A user as the API shows it: an ``AccountRecord``, or the ORM ``User`` (the CLI's)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def email(self) -> str: ...
    @property
    def full_name(self) -> str | None: ...
    @property
    def role(self) -> Role: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def is_verified(self) -> bool: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def last_login_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    is_verified: bool
    created_at: datetime
    last_login_at: datetime | None


class Login(Protocol):
    """What decides whether a login session may still be used (``AuthSession`` has it too)."""

    @property
    def is_revoked(self) -> bool: ...
    @property
    def expires_at(self) -> datetime: ...
    @property
    def idle_expires_at(self) -> datetime: ...
    @property
    def user(self) -> Account: ...


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
    user: AccountRecord


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
    user: AccountRecord
