"""What an API key looks like: ``th_<prefix>_<secret>``, found by its public prefix."""

from __future__ import annotations

import base64
import secrets

from tablehouse.core.security.tokens import new_opaque_token

API_KEY_MARKER = "th_"


def new_api_key(prefix_length: int = 8) -> tuple[str, str]:
    """A new API key and its public prefix."""
    prefix = base64.b32encode(secrets.token_bytes(5)).decode().lower()[:prefix_length]
    return f"{API_KEY_MARKER}{prefix}_{new_opaque_token()}", prefix


def is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_MARKER)


def prefix_of(key: str) -> str | None:
    """The public prefix of what claims to be an API key, or None if it has no secret part."""
    prefix, _, secret = key.removeprefix(API_KEY_MARKER).partition("_")
    return prefix if prefix and secret else None
