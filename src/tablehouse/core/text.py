"""Text a user sends that the database stores: PostgreSQL cannot store the NUL character.

Refused on both backends alike, so a body that works on SQLite works on PostgreSQL too.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


Text = Annotated[str, AfterValidator(without_nul)]
