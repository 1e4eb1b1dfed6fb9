"""One row, named by its primary key: read it, change some of its fields, or delete it.

Every statement here is bounded by all of the key's fields (``keys.matches``), so no request
can change or delete more than the one row it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, delete, null, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.datasets.models import Schema
from tablehouse.errors import Conflict, InvalidInput, Location, NotFound
from tablehouse.rows import keys
from tablehouse.rows.layout import Layout
from tablehouse.rows.rendering import record
from tablehouse.rows.values import InvalidValue

Problems = list[tuple[Location, str, str]]


class _Refused(ValueError):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


async def get(session: AsyncSession, *, schema: Schema, key: str) -> dict[str, Any]:
    layout = Layout.of(schema)
    match = _match(layout, key)
    row = (await session.execute(select(layout.table).where(match))).first()
    if row is None:
        raise _not_found(key)
    return record(layout.names, row)


async def patch(session: AsyncSession, *, schema: Schema, key: str, changes: Any) -> dict[str, Any]:
    """Set the fields in ``changes`` (a JSON object), checked as ingest checks them."""
    layout = Layout.of(schema)
    match = _match(layout, key)
    values = _checked_changes(layout, changes)
    statement = (
        update(layout.table)
        .where(match)
        .values({layout.table.c[name]: null() if v is None else v for name, v in values.items()})
        .returning(*layout.table.c)
    )
    try:
        row = (await session.execute(statement)).first()
    except IntegrityError:
        raise _unique_violation(layout, values) from None
    if row is None:
        raise _not_found(key)
    return record(layout.names, row)


async def remove(session: AsyncSession, *, schema: Schema, key: str) -> None:
    layout = Layout.of(schema)
    match = _match(layout, key)
    first_key = layout.table.c[layout.key[0]]
    statement = delete(layout.table).where(match).returning(first_key)
    if (await session.execute(statement)).first() is None:
        raise _not_found(key)


def _match(layout: Layout, key: str) -> ColumnElement[bool]:
    return keys.matches(layout, keys.values(layout, key))


def _checked_changes(layout: Layout, changes: Any) -> dict[str, Any]:
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


def _unique_violation(layout: Layout, values: Mapping[str, Any]) -> Conflict:
    unique = [name for name in values if layout.by_name[name].unique]
    which = ", ".join(f"'{name}'" for name in unique) or "a unique field"
    return Conflict(f"another row already has this value of {which}", code="unique_violation")


def _not_found(key: str) -> NotFound:
    return NotFound(f"no row with key '{key}'", code="row_not_found")
