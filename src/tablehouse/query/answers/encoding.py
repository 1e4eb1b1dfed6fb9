"""Values of an answer as JSON or CSV text, exactly.

orjson writes integers of at most 64 bits and nests at most 255 levels, but PostgreSQL's
answers can hold more: a ``numeric`` (``2::numeric ^ 70``), a JSON value decoded into a
Python integer of any size, or nested 300 deep. Such numbers go out as the exact digits of a
JSON number (valid JSON, exact for readers that keep big numbers, such as Python's ``json``;
a string would change the column's type for every reader), and such JSON values are written
by the standard library instead.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from typing import Any

import orjson

from tablehouse.errors import BadRequest

# A decimal with fewer digits before the point than this is an int to orjson (2**63 > 10**18).
_INT_DIGITS = 18


def exact_decimal(value: decimal.Decimal) -> int | float | str:
    """An int for whole numbers and a float for others, where they hold the value; else the
    decimal's exact digits (a valid JSON number). NaN and infinities stay floats (JSON null)."""
    if not value.is_finite():
        return float(value)
    if value == value.to_integral_value():
        whole = value.to_integral_value()
        return int(whole) if whole.adjusted() < _INT_DIGITS else format(whole, "f")
    number = float(value)
    if math.isinf(number) or (number == 0 and not value.is_zero()):
        return format(value, "f")
    return number


def _default(value: Any) -> Any:
    """Values orjson does not know: exact decimals become JSON numbers, durations seconds,
    bytes base64, anything else its text."""
    if isinstance(value, decimal.Decimal):
        number = exact_decimal(value)
        return orjson.Fragment(number) if isinstance(number, str) else number
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_default)
    except orjson.JSONEncodeError:
        # Rare: an integer past 64 bits or nesting past 255 levels, inside a JSON value.
        return orjson.dumps(_spelled_out(value), default=_default)


def _spelled_out(value: Any) -> Any:
    """A row (list or dict) whose JSON values and integers are already JSON text."""
    if isinstance(value, dict):
        return {key: _as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_text(item) for item in value]
    return _as_text(value)


def _as_text(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | dict | list):
        return value
    try:
        return orjson.Fragment(
            json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_plain)
        )
    except (RecursionError, ValueError):
        raise BadRequest(
            "a value in the answer cannot be written as JSON: it is nested too deeply or "
            "holds an integer of more than 4,300 digits",
            code="value_not_encodable",
        ) from None


def _plain(value: Any) -> Any:
    """What the standard library's encoder cannot write itself, as in ``_default``."""
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    return _default(value)


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(exact_decimal(value))
    if isinstance(value, dict | list):
        return encode(value).decode()
    return str(_default(value))
