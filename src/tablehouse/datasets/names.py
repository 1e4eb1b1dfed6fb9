"""What a user may call a dataset or a field."""

from __future__ import annotations

import re

from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRESQL_RESERVED
from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# PostgreSQL cuts longer identifiers to 63 bytes without a word; we refuse them instead.
MAX_IDENTIFIER_BYTES = 63
RESERVED_WORDS = frozenset(
    word.lower() for word in POSTGRESQL_RESERVED | SQLiteIdentifierPreparer.reserved_words
)


def check_identifier(value: str) -> str:
    """The name itself, or ValueError saying what is wrong with it (pydantic reports it)."""
    if not IDENTIFIER.match(value):
        raise ValueError(
            "must start with a letter or underscore and contain only letters, digits "
            "and underscores"
        )
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"must be at most {MAX_IDENTIFIER_BYTES} bytes long")
    if value.lower() in RESERVED_WORDS:
        raise ValueError(f"'{value}' is a reserved SQL word; choose another name")
    return value
