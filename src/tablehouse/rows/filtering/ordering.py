"""The order of a row listing, the fields it returns, and the keyset condition for a page.

The primary key always ends the order, so the order is total and a keyset cursor never skips
or repeats a row, however many rows share a sort value. Nulls come last in both directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, or_
from sqlalchemy.sql.elements import UnaryExpression

from tablehouse.errors import InvalidInput
from tablehouse.rows.convert.layout import Layout
from tablehouse.rows.schemas import DIRECTIONS


@dataclass(frozen=True)
class SortKey:
    name: str
    descending: bool = False
    nullable: bool = False


def parse_order(layout: Layout, text: str | None) -> list[SortKey]:
    """``field[.asc|.desc],...`` then every primary-key field not named, ascending."""
    keys: list[SortKey] = []
    for item in [] if text is None else text.split(","):
        name, _, direction = item.partition(".")
        keys.append(_sort_key(layout, name, direction or "asc", seen={k.name for k in keys}))
    named = {key.name for key in keys}
    return keys + [SortKey(name) for name in layout.key if name not in named]


def _sort_key(layout: Layout, name: str, direction: str, *, seen: set[str]) -> SortKey:
    spec = layout.by_name.get(name)
    if spec is None:
        raise _invalid_order(f"no field named '{name}'; fields: {', '.join(layout.names)}")
    if spec.type == "json":
        raise _invalid_order(f"'{name}' is a json field; json fields cannot be ordered")
    if direction not in DIRECTIONS:
        raise _invalid_order(f"'{name}.{direction}': the direction is asc or desc")
    if name in seen:
        raise _invalid_order(f"'{name}' is ordered twice")
    return SortKey(name, descending=direction == "desc", nullable=spec.is_nullable)


def _invalid_order(message: str) -> InvalidInput:
    return InvalidInput(message, loc=("query", "order"), code="invalid_order")


def parse_select(layout: Layout, text: str | None) -> list[str]:
    """The fields to return, in the order named (repeats ignored); all fields by default."""
    if text is None:
        return list(layout.names)
    names = list(dict.fromkeys(text.split(",")))
    unknown = [name for name in names if name not in layout.by_name]
    if unknown:
        raise InvalidInput(
            f"no field named {', '.join(repr(n) for n in unknown)}; "
            f"fields: {', '.join(layout.names)}",
            loc=("query", "select"),
            code="unknown_field",
        )
    return names


def order_by(table: Table, keys: Sequence[SortKey]) -> list[UnaryExpression[Any]]:
    clauses = []
    for key in keys:
        column = table.c[key.name]
        clause = column.desc() if key.descending else column.asc()
        # Only where nulls can occur: a plain order on the key can use its index.
        clauses.append(clause.nulls_last() if key.nullable else clause)
    return clauses


def after(table: Table, keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows that come after ``values`` in the order of ``keys``.

    The row-value comparison ``(a, b) > (x, y)`` written out as
    ``a > x OR (a = x AND b > y)``, so that it honours each key's direction and nulls last.
    """
    alternatives: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for key, value in zip(keys, values, strict=True):
        column = table.c[key.name]
        beyond = _beyond(key, column, value)
        if beyond is not None:
            alternatives.append(and_(*equal_so_far, beyond))
        equal_so_far.append(column.is_(None) if value is None else column == value)
    return or_(false(), *alternatives)


def _beyond(key: SortKey, column: Any, value: Any) -> ColumnElement[bool] | None:
    """Strictly after ``value`` in this key alone; nothing comes after null (nulls last)."""
    if value is None:
        return None
    beyond: ColumnElement[bool] = column < value if key.descending else column > value
    return or_(beyond, column.is_(None)) if key.nullable else beyond
