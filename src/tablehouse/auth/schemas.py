"""Request and response bodies for accounts, and a user's fields. Hashes never appear in a
response."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import email_validator
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from tablehouse.api.responses import ErrorBody
from tablehouse.auth.models import Role, Scope
from tablehouse.core.text import Text

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128
MAX_EMAIL_LENGTH = 2048


def check_email(value: str) -> str:
    """The address, normalised, or the reason it is not one (pydantic reports it).

    Like pydantic's ``EmailStr`` (syntax only, no DNS), except that an address under the
    ``test`` domain, reserved for testing (RFC 6761), is taken: a self-hosted instance is
    tried out with such accounts, and whether mail reaches an address is for verification
    to prove, not for the syntax check to guess. Other special-use domains stay refused.
    """
    if len(value) > MAX_EMAIL_LENGTH:  # before the parser spends time on it
        raise _invalid_email(f"must be at most {MAX_EMAIL_LENGTH} characters")
    try:
        parts = email_validator.validate_email(
            value.strip(), check_deliverability=False, test_environment=True
        )
    except email_validator.EmailNotValidError as exc:
        raise _invalid_email(str(exc)) from None
    return parts.normalized


def _invalid_email(reason: str) -> PydanticCustomError:
    return PydanticCustomError(
        "value_error", "value is not a valid email address: {reason}", {"reason": reason}
    )


Email = Annotated[
    str, AfterValidator(check_email), WithJsonSchema({"type": "string", "format": "email"})
]
# Length is checked by the service (after normalisation) so the message can be precise;
# the upper bound here only stops absurd bodies before they reach the hasher.
Password = Annotated[str, Field(max_length=MAX_PASSWORD_LENGTH * 4)]
# A password being set: the document states the policy's bounds, which the service checks.
NewPassword = Annotated[
    str,
    Field(
        max_length=MAX_PASSWORD_LENGTH * 4,
        description=f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters, "
        "not your email address",
        json_schema_extra={"minLength": MIN_PASSWORD_LENGTH, "maxLength": MAX_PASSWORD_LENGTH},
    ),
]
FullName = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _in_utc(value: datetime) -> datetime:
    """An instant given with its offset, in UTC. Without an offset the time is ambiguous (the
    client's local time? UTC?), and a guess would move an expiry by hours, so it is refused."""
    if value.utcoffset() is None:
        raise PydanticCustomError("timezone_aware", "must have a UTC offset, such as Z or +02:00")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is in year 10000 in UTC
        raise PydanticCustomError(
            "datetime_range", "must be between years 1 and 9999 in UTC"
        ) from None


Instant = Annotated[datetime, AfterValidator(_in_utc)]


class RegisterRequest(BaseModel):
    email: Email
    password: NewPassword
    full_name: FullName | None = None


class LoginRequest(BaseModel):
    email: Email
    password: Password


class LoginThrottledBody(ErrorBody):
    """429 from a login: which limit refused it, and when to try again."""

    detail: str = Field(description="What was hit, and what to do about it")
    code: Literal["login_throttled"] = Field(description="Always login_throttled here")
    limit: Literal["account", "address"] = Field(
        description="account: failed logins for this email, from anywhere. address: failed "
        "logins from the client's address, for this or other emails"
    )
    retry_after: int = Field(
        ge=1, description="Seconds until an attempt can get through; the Retry-After header"
    )


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")


# A user's fields, declared once: the response body, the caller every authenticated request
# knows (Principal.user), and the users columns the repository selects for it, by these names
# (USER_FIELDS). A field added here and to the model is added everywhere; a name that is not a
# column fails at import, not in a response. (A comment: a docstring would enter the document.)
class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    is_verified: bool
    created_at: datetime
    last_login_at: datetime | None


USER_FIELDS: tuple[str, ...] = tuple(UserRead.model_fields)


@dataclass(frozen=True, slots=True)
class Client:
    """What a request says of the program that sent it, kept with the login session."""

    address: str | None
    user_agent: str | None


class UpdateMe(BaseModel):
    # A new password needs the current one (checked by the service, stated here).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"required": ["password"], "properties": {"password": {"type": "string"}}},
            "then": {
                "required": ["current_password"],
                "properties": {"current_password": {"type": "string"}},
            },
        },
    )

    full_name: FullName | None = None
    password: NewPassword | None = Field(default=None, description="The new password")
    current_password: Password | None = Field(
        default=None, description="Required when changing the password"
    )


class AdminUserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: FullName | None = None
    role: Role | None = None
    is_active: bool | None = None
    is_verified: bool | None = None


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    client_address: str | None
    user_agent: str | None
    current: bool = False


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(min_length=1)]
    expires_at: Instant | None = Field(
        default=None, description="When the key stops working; with an offset, e.g. Z"
    )
    datasets: list[Annotated[Text, Field(min_length=1, max_length=63)]] | None = Field(
        default=None, description="Restrict the key to these datasets; omit for all"
    )


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[Scope]
    datasets: list[str] | None = Field(validation_alias=AliasChoices("dataset_names", "datasets"))
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself; shown this once and never again")


class EmailRequest(BaseModel):
    email: Email


class TokenConfirm(BaseModel):
    token: Annotated[str, Field(min_length=1, max_length=200)]


class PasswordResetConfirm(TokenConfirm):
    new_password: NewPassword
