"""Stored values as JSON: what the row API returns, and what a cursor carries.

Dates and date-times become ISO 8601 strings (date-times are UTC, with ``+00:00``), UUIDs
their canonical string; every other value (numbers, strings, booleans, JSON) is JSON already.
The JSON converters of ``values`` turn each of these back into the stored value.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any


def json_value(value: Any) -> Any:
    if isinstance(value, date):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def record(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    return {name: json_value(value) for name, value in zip(names, values, strict=True)}
