"""Turning what a client sent into the value a field stores, or saying precisely why not.

One converter per field, chosen once per request, so a million rows cost a function call
per value. JSON values arrive typed; CSV cells and URL parameters arrive as text.

A ``json`` field takes any JSON value both backends store and give back as it came: nested
at most ``MAX_JSON_DEPTH`` levels (orjson, which writes COPY data and query answers, stops
at 255, and pydantic's response encoder sooner), integers within signed 64 bits (orjson and
SQLite's JSON functions turn bigger ones into floats, and so does JavaScript), finite
numbers, no NUL character (PostgreSQL cannot store it).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import orjson

from tablehouse.core.database import Backend
from tablehouse.core.times import as_utc
from tablehouse.datasets.schemas import FieldSpec

Converter = Callable[[Any], Any]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 64  # levels of arrays and objects inside one json field's value
# The shortest integer literal that may be beyond 64 bits has 19 digits (-9223372036854775809).
_LONG_DIGITS = b"1" * 19
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
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
        if not value.isascii():
            _ensure_unicode(value)
        if max_length is not None and len(value) > max_length:
            raise InvalidValue(f"longer than max_length {max_length}")
        return value

    return convert


def _ensure_unicode(value: str) -> None:
    """A JSON body can escape half of a UTF-16 pair (``"\\ud800"``); no database text holds
    it (SQLite and PostgreSQL would store ``?`` or fail), so it is refused, not changed."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = value[error.start]
        raise InvalidValue(
            f"not valid Unicode text: a lone surrogate (\\u{ord(bad):04x}) at character "
            f"{error.start}"
        ) from None


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
    try:
        number = float(value)
    except OverflowError:  # an exact integer from a JSON text, such as 10**400
        raise InvalidValue("number too large for a float") from None
    if not math.isfinite(number):
        raise InvalidValue("numbers must be finite (no NaN or infinity)")
    return number


def _without_negative_zero(number: float) -> float:
    # SQLite writes a REAL with no fractional part as an integer, so -0.0 would come back
    # as 0.0; refused rather than changed.
    if number == 0.0 and math.copysign(1.0, number) < 0:
        raise InvalidValue("-0.0 cannot be stored on this server (SQLite keeps it as 0.0)")
    return number


def _float_for_sqlite(value: Any) -> float:
    return _without_negative_zero(_float(value))


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
    try:  # stored in UTC; a date-time without an offset is taken as UTC
        return as_utc(parsed)
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None


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
    _check_json(value, True)
    return value


def _json_for_postgresql(value: Any) -> Any:
    # jsonb keeps numbers as numeric, which has no negative zero: -0.0 would come back 0.0.
    _check_json(value, False)
    return value


def _check_json(value: Any, keeps_negative_zero: bool, depth: int = 0) -> None:
    """``value`` and everything in it. The recursion stops at ``MAX_JSON_DEPTH``, so no
    nesting, however deep, can exhaust the stack. (Positional arguments: it runs per value.)"""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidValue("strings cannot contain the NUL character")
        if not value.isascii():
            _ensure_unicode(value)
    elif isinstance(value, dict):
        if depth == MAX_JSON_DEPTH:
            raise _too_deep()
        for key, item in value.items():
            if "\x00" in key:
                raise InvalidValue("strings cannot contain the NUL character")
            if not key.isascii():
                _ensure_unicode(key)
            _check_json(item, keeps_negative_zero, depth + 1)
    elif isinstance(value, list):
        if depth == MAX_JSON_DEPTH:
            raise _too_deep()
        for item in value:
            _check_json(item, keeps_negative_zero, depth + 1)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue("numbers must be finite")
        if not keeps_negative_zero and value == 0.0 and math.copysign(1.0, value) < 0:
            raise InvalidValue("-0.0 cannot be stored on this server (PostgreSQL keeps it as 0.0)")
    elif isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InvalidValue(
            "an integer is outside the signed 64-bit range, which JSON values keep exactly; "
            "send big numbers as strings"
        )


def _too_deep() -> InvalidValue:
    return InvalidValue(
        f"nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects "
        f"(the limit is {MAX_JSON_DEPTH} levels)"
    )


def may_hold_big_integers(text: str | bytes) -> bool:
    """False when ``text`` holds no integer literal beyond 64 bits: no run of 19 digits.

    Digits become "1" and every other byte "0", then a run of 19 ones is looked for: two
    passes in C, several times faster than a regular expression (which costs as much as
    parsing the JSON)."""
    raw = text if isinstance(text, bytes) else text.encode()
    return raw.translate(_DIGITS_AS_ONES).find(_LONG_DIGITS) >= 0


def json_text(text: str | bytes) -> Any:
    """JSON text as values, integers exact; ValueError when it is not JSON.

    orjson reads an integer beyond 64 bits as a float, losing it silently, so a text that
    may hold one is read again by the standard library, which keeps integers exact. orjson
    reads it first: it is the stricter (no NaN, no lone surrogates), so both agree.
    """
    value = orjson.loads(text)
    if not may_hold_big_integers(text):
        return value
    try:
        return json.loads(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise ValueError("an integer has too many digits; send big numbers as strings") from None


def _parsed_json(value: str) -> Any:
    try:
        return json_text(value)
    except ValueError:
        raise InvalidValue("not valid JSON") from None


def _json_text(value: str) -> Any:
    """A CSV cell or URL value holding JSON text."""
    return _json(_parsed_json(value))


def _json_text_for_postgresql(value: str) -> Any:
    return _json_for_postgresql(_parsed_json(value))


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


def _float_text_for_sqlite(value: str) -> float:
    return _without_negative_zero(_float_text(value))


def fast_text_converter(spec: FieldSpec, *, storing_in: Backend | None = None) -> Converter:
    """A quicker converter for a non-empty text cell; any exception means "look closer"."""
    if spec.type == "integer":
        return _integer_text
    if spec.type == "float":
        return _float_text_for_sqlite if storing_in == Backend.SQLITE else _float_text
    return converter(spec, from_text=True, storing_in=storing_in)


def converter(
    spec: FieldSpec, *, from_text: bool = False, storing_in: Backend | None = None
) -> Converter:
    """The function that checks and converts one value of ``spec`` (not None: see ``required``).

    ``storing_in``: the backend the value is stored in (a dialect name), which may not keep
    every value as sent: SQLite loses the sign of a float -0.0, PostgreSQL's jsonb that of a
    JSON -0.0. None for values that are only compared (filters, keys, cursors).
    """
    match spec.type:
        case "string":
            return _string(spec.max_length)
        case "integer":
            return _integer
        case "float":
            return _float_for_sqlite if storing_in == Backend.SQLITE else _float
        case "boolean":
            return _boolean
        case "datetime":
            return _datetime
        case "date":
            return _date
        case "uuid":
            return _uuid
        case "json" if storing_in == Backend.POSTGRESQL:
            return _json_text_for_postgresql if from_text else _json_for_postgresql
        case "json":
            return _json_text if from_text else _json
    raise AssertionError(spec.type)
