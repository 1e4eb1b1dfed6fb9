"""What Tablehouse takes as an email address."""

from __future__ import annotations

import email_validator
from pydantic_core import PydanticCustomError

MAX_EMAIL_LENGTH = 2048


def check_email(value: str) -> str:
    """The address, normalised, or the reason it is not one (pydantic reports it).

    Like pydantic's ``EmailStr`` (syntax only, no DNS), except that an address under the
    ``test`` domain, reserved for testing (RFC 6761), is taken: a self-hosted instance is
    tried out with such accounts, and whether mail reaches an address is for verification
    to prove, not for the syntax check to guess. Other special-use domains stay refused.
    """
    if len(value) > MAX_EMAIL_LENGTH:  # before the parser spends time on it
        raise _invalid(f"must be at most {MAX_EMAIL_LENGTH} characters")
    try:
        parts = email_validator.validate_email(
            value.strip(), check_deliverability=False, test_environment=True
        )
    except email_validator.EmailNotValidError as exc:
        raise _invalid(str(exc)) from None
    return parts.normalized


def _invalid(reason: str) -> PydanticCustomError:
    return PydanticCustomError(
        "value_error", "value is not a valid email address: {reason}", {"reason": reason}
    )
