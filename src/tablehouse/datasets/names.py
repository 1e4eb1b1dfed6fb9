"""What a user may call a dataset or a field."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRESQL_RESERVED
from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
IDENTIFIER = re.compile(rf"^{NAME}$")
# PostgreSQL cuts longer identifiers to 63 bytes without a word; we refuse them instead.
MAX_IDENTIFIER_BYTES = 63
RESERVED_WORDS = frozenset(
    word.lower() for word in POSTGRESQL_RESERVED | SQLiteIdentifierPreparer.reserved_words
)


def check_identifier(value: str) -> str:
    """The name itself, or ValueError saying what is wrong with it (pydantic reports it)."""
    if not IDENTIFIER.fullmatch(value):  # not .match: "$" also matches before a final "\n"
        raise ValueError(
            "must start with a letter or underscore and contain only letters, digits "
            "and underscores"
        )
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"must be at most {MAX_IDENTIFIER_BYTES} bytes long")
    if value.lower() in RESERVED_WORDS:
        raise ValueError(f"'{value}' is a reserved SQL word; choose another name")
    return value


def identifier_json_schema() -> dict[str, Any]:
    """What ``check_identifier`` accepts, for the OpenAPI document. The pattern allows ASCII
    only, so characters are bytes; JSON Schema patterns have no case-insensitive flag, so
    each reserved word is spelled with both cases of every letter."""
    reserved = "|".join(sorted(_any_case(word) for word in RESERVED_WORDS))
    return {
        "type": "string",
        "pattern": IDENTIFIER.pattern,
        "maxLength": MAX_IDENTIFIER_BYTES,
        "not": {"pattern": f"^({reserved})$"},
        "description": "A letter or underscore, then letters, digits and underscores; "
        f"at most {MAX_IDENTIFIER_BYTES} characters; not a reserved SQL word",
    }


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)
