"""Opaque keyset cursors: where the next page starts, and for which listing.

A cursor is base64url (unpadded) of ``{"after": [sort values of the last row], "for":
fingerprint}``. The fingerprint covers the dataset, the order and the filters, so a cursor
used with another order or other filters is refused instead of returning a wrong page. It is
not a secret: a hand-made cursor can only choose where a listing the caller may read starts,
and its values are checked by the fields' converters and bound as parameters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from tablehouse.errors import BadRequest
from tablehouse.rows.convert.layout import Layout
from tablehouse.rows.convert.rendering import json_value
from tablehouse.rows.convert.values import InvalidValue
from tablehouse.rows.filtering.ordering import SortKey


def fingerprint(
    table_name: str, keys: Sequence[SortKey], filters: Sequence[tuple[str, str]]
) -> str:
    material = orjson.dumps(
        [table_name, [[k.name, k.descending] for k in keys], sorted(map(list, filters))]
    )
    return hashlib.sha256(material).hexdigest()[:24]


def encode(values: Sequence[Any], fingerprint: str) -> str:
    payload = orjson.dumps({"after": [json_value(v) for v in values], "for": fingerprint})
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode(token: str, *, fingerprint: str, layout: Layout, keys: Sequence[SortKey]) -> list[Any]:
    """The stored values the cursor points after, or 400 ``invalid_cursor``."""
    payload = _payload(token)
    if payload.get("for") != fingerprint:
        raise _invalid("this cursor belongs to a listing with another order or other filters")
    values = payload.get("after")
    if not isinstance(values, list) or len(values) != len(keys):
        raise _invalid("this cursor is malformed")
    return [_stored(layout, key, value) for key, value in zip(keys, values, strict=True)]


def _payload(token: str) -> dict[str, Any]:
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise _invalid("this cursor is malformed") from None
    if not isinstance(payload, dict):
        raise _invalid("this cursor is malformed")
    return payload


def _stored(layout: Layout, key: SortKey, value: Any) -> Any:
    if value is None:
        if not key.nullable:
            raise _invalid("this cursor is malformed")
        return None
    convert = layout.json_converters[layout.names.index(key.name)]
    try:
        return convert(value)
    except InvalidValue:
        raise _invalid("this cursor is malformed") from None


def _invalid(message: str) -> BadRequest:
    return BadRequest(
        f"{message}; start again without 'cursor' or pass the 'next' of the previous page "
        "with the same order and filters",
        code="invalid_cursor",
    )
