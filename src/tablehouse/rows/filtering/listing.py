"""One listing's request checked against a dataset's fields: its filters, order, selected
fields and the cursor it starts after (every problem reported at once). The repository turns
a plan into one SELECT on the dataset's table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement

from tablehouse.core.database import Backend
from tablehouse.rows.convert.layout import Layout
from tablehouse.rows.filtering import cursors
from tablehouse.rows.filtering.filters import Filter, all_of, parse_filters
from tablehouse.rows.filtering.ordering import SortKey, parse_order, parse_select
from tablehouse.rows.schemas import ReadRequest


@dataclass(frozen=True)
class Plan:
    """One listing, checked: what to select, in which order, from where on."""

    layout: Layout
    filters: list[Filter]
    keys: list[SortKey]
    shown: list[str]
    fetched: list[str]  # shown fields, then sort fields not shown (the cursor needs them)
    fingerprint: str
    start_after: list[Any] | None

    @classmethod
    def of(cls, layout: Layout, request: ReadRequest, *, backend: Backend) -> Plan:
        filters = parse_filters(layout, request.params, backend=backend)
        keys = parse_order(layout, request.order)
        shown = parse_select(layout, request.select)
        fingerprint = cursors.fingerprint(
            layout.table.name, keys, [(f.field, f.text) for f in filters]
        )
        start_after = None
        if request.cursor is not None:
            start_after = cursors.decode(
                request.cursor, fingerprint=fingerprint, layout=layout, keys=keys
            )
        hidden = [key.name for key in keys if key.name not in shown]
        return cls(layout, filters, keys, shown, shown + hidden, fingerprint, start_after)

    def where(self) -> ColumnElement[bool]:
        return all_of(self.filters)

    def cursor_after(self, row: Sequence[Any]) -> str:
        values = [row[self.fetched.index(key.name)] for key in self.keys]
        return cursors.encode(values, self.fingerprint)
