"""Turning what a client sent into the value a field stores, or saying precisely why not.

One converter per field, chosen once per request, so a million rows cost a function call
per value. JSON values arrive typed; CSV cells and URL parameters arrive as text.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

from tablehouse.datasets.schemas import FieldSpec

Converter = Callable[[Any], Any]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})


class InvalidValue(ValueError):
    """The message names what was expected; the caller adds the row and field."""


def _string(max_length: int | None) -> Converter:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidValue("expected a string")
        if "\x00" in value:
            raise InvalidValue("strings cannot contain the NUL character")
        if max_length is not None and len(value) > max_length:
            raise InvalidValue(f"longer than max_length {max_length}")
        return value

    return convert


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise InvalidValue(f"expected an integer, got {value[:40]!r}") from None
        else:
            raise InvalidValue("expected an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidValue("integer out of the 64-bit range")
    return int(value)


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidValue("expected a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidValue(f"expected a number, got {value[:40]!r}") from None
    if not isinstance(value, int | float):
        raise InvalidValue("expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValue("numbers must be finite (no NaN or infinity)")
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise InvalidValue("expected true or false")


# In a URL query "+" arrives as a space: "...T10:00:00 02:00" meant "+02:00".
_SPACED_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


def _datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidValue("expected an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1+\2", value.strip()))
    except ValueError:
        raise InvalidValue(f"not an ISO 8601 date-time: {value[:40]!r}") from None
    # A date-time without an offset is taken as UTC; every value is stored in UTC.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _date(value: Any) -> date:
    if not isinstance(value, str):
        raise InvalidValue("expected an ISO 8601 date string (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidValue(f"not an ISO 8601 date: {value[:40]!r}") from None


def _uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise InvalidValue("expected a UUID string")
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise InvalidValue(f"not a UUID: {value[:40]!r}") from None


def _json(value: Any) -> Any:
    _reject_nul(value)
    return value


def _json_text(value: Any) -> Any:
    """A CSV cell or URL value holding JSON text."""
    try:
        return _json(orjson.loads(value))
    except orjson.JSONDecodeError:
        raise InvalidValue("not valid JSON") from None


def _reject_nul(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidValue("strings cannot contain the NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    elif isinstance(value, list):
        for item in value:
            _reject_nul(item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue("numbers must be finite")


def _integer_text(value: str) -> int:
    number = int(value)  # ValueError for non-integers; the slow path explains
    if not INT64_MIN <= number <= INT64_MAX:
        raise InvalidValue("integer out of the 64-bit range")
    return number


def _float_text(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValue("numbers must be finite (no NaN or infinity)")
    return number


def fast_text_converter(spec: FieldSpec) -> Converter:
    """A quicker converter for a non-empty text cell; any exception means "look closer"."""
    if spec.type == "integer":
        return _integer_text
    if spec.type == "float":
        return _float_text
    return converter(spec, from_text=True)


def converter(spec: FieldSpec, *, from_text: bool = False) -> Converter:
    """The function that checks and converts one value of ``spec`` (not None: see ``required``)."""
    match spec.type:
        case "string":
            return _string(spec.max_length)
        case "integer":
            return _integer
        case "float":
            return _float
        case "boolean":
            return _boolean
        case "datetime":
            return _datetime
        case "date":
            return _date
        case "uuid":
            return _uuid
        case "json":
            return _json_text if from_text else _json
    raise AssertionError(spec.type)
