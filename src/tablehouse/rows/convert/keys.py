"""A row's primary key in a URL path: ``/schemas/{name}/rows/{key}``.

- One key field: the value itself, percent-encoded as any path segment (``/rows/42``,
  ``/rows/a%2Fb`` for ``a/b``).
- Several key fields: the values in field order joined by ``,``; a ``,`` or ``\\`` inside a
  value is written ``\\,`` or ``\\\\`` (``/rows/2024-01-01,north``, ``/rows/a\\,b,c`` for
  ``("a,b", "c")``). Percent-encoding happens after this escaping and is undone before it.

Each part is converted by its field's text converter, as for a filter value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tablehouse.errors import InvalidInput, Location
from tablehouse.rows.convert.layout import Layout
from tablehouse.rows.convert.values import InvalidValue

SEPARATOR = ","
ESCAPE = "\\"


def encode(parts: Sequence[str]) -> str:
    """The key of a row whose key fields, as text, are ``parts`` (before percent-encoding)."""
    if len(parts) == 1:
        return parts[0]
    return SEPARATOR.join(
        part.replace(ESCAPE, ESCAPE * 2).replace(SEPARATOR, ESCAPE + SEPARATOR) for part in parts
    )


def split(text: str, count: int) -> list[str]:
    """The ``count`` parts of an encoded key, or 422 saying what is wrong with it."""
    if count == 1:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == SEPARATOR:
            parts.append("".join(current))
            current = []
        elif char == ESCAPE:
            escaped = next(chars, "")
            if escaped not in (SEPARATOR, ESCAPE):
                raise _invalid("inside a key part, a backslash must precede ',' or '\\'")
            current.append(escaped)
        else:
            current.append(char)
    parts.append("".join(current))
    if len(parts) != count:
        raise _invalid(
            f"this dataset's key has {count} fields; found {len(parts)} comma-separated parts"
        )
    return parts


def values(layout: Layout, text: str) -> list[Any]:
    """The key's stored values, in key-field order."""
    parts = split(text, len(layout.key))
    problems: list[tuple[Location, str, str]] = []
    converted: list[Any] = []
    for name, part in zip(layout.key, parts, strict=True):
        convert = layout.text_converters[layout.names.index(name)]
        try:
            converted.append(convert(part))
        except InvalidValue as exc:
            problems.append((("path", "key", name), f"{name}: {exc}", "invalid_value"))
    if problems:
        raise InvalidInput.of(problems)
    return converted


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, loc=("path", "key"), code="invalid_key")
