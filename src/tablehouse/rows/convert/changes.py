"""A PATCH body's fields, checked and converted as ingest converts them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tablehouse.errors import InvalidInput, Location
from tablehouse.rows.convert.layout import Layout
from tablehouse.rows.convert.values import InvalidValue

Problems = list[tuple[Location, str, str]]


class _Refused(ValueError):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def checked_changes(layout: Layout, changes: Any) -> dict[str, Any]:
    """The fields in ``changes`` (a JSON object) and their stored values; InvalidInput naming
    every field that cannot be changed so."""
    if not isinstance(changes, Mapping):
        raise InvalidInput("expected a JSON object of fields to change", loc=("body",))
    if not changes:
        raise InvalidInput("nothing to change: name at least one field", loc=("body",))
    problems: Problems = []
    values: dict[str, Any] = {}
    for name, value in changes.items():
        try:
            values[name] = _checked(layout, name, value)
        except _Refused as exc:
            problems.append((("body", name), f"{name}: {exc}", exc.kind))
    if problems:
        raise InvalidInput.of(problems)
    return values


def _checked(layout: Layout, name: str, value: Any) -> Any:
    spec = layout.by_name.get(name)
    if spec is None:
        raise _Refused(f"no such field; fields: {', '.join(layout.names)}", "unknown_field")
    if spec.primary_key:
        raise _Refused(
            "a primary-key field cannot be changed; delete the row and load it again",
            "primary_key",
        )
    if value is None:
        if not spec.is_nullable:
            raise _Refused("may not be null", "not_nullable")
        return None
    try:
        return layout.json_converters[layout.names.index(name)](value)
    except InvalidValue as exc:
        raise _Refused(str(exc), "invalid_value") from None
