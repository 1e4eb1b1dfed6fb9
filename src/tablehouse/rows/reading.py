"""Listing a dataset's rows: filters, order, selected fields, keyset pages and counts.

``GET /schemas/{name}/rows`` in service form: the request's parameters are checked against
the dataset's fields (every problem reported at once), turned into one SELECT on the
dataset's table, and the rows come back as JSON-ready values with the cursor of the next page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.datasets.models import Schema
from tablehouse.rows import cursors
from tablehouse.rows.filters import Filter, all_of, parse_filters
from tablehouse.rows.layout import Layout
from tablehouse.rows.ordering import SortKey, after, order_by, parse_order, parse_select
from tablehouse.rows.rendering import record

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CountMode = Literal["exact", "estimated"]


@dataclass(frozen=True)
class ReadRequest:
    params: Sequence[tuple[str, str]]  # every query parameter; those not reserved are filters
    order: str | None = None
    select: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    count: CountMode | None = None


class RowPage(BaseModel):
    rows: list[dict[str, Any]]
    next: str | None = Field(
        description="Pass as ?cursor= with the same filters and order for the next page; "
        "null on the last page"
    )
    count: int | None = Field(
        None, description="With ?count=: the rows that match the filters (all pages)"
    )


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
    def of(cls, layout: Layout, request: ReadRequest, *, backend: str) -> Plan:
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

    def page(self, limit: int) -> Select[Any]:
        table = self.layout.table
        statement = select(*(table.c[name] for name in self.fetched)).where(self.where())
        if self.start_after is not None:
            statement = statement.where(after(table, self.keys, self.start_after))
        # One row more than asked tells whether there is a next page.
        return statement.order_by(*order_by(table, self.keys)).limit(limit + 1)

    def cursor_after(self, row: Sequence[Any]) -> str:
        values = [row[self.fetched.index(key.name)] for key in self.keys]
        return cursors.encode(values, self.fingerprint)


async def list_rows(session: AsyncSession, *, schema: Schema, request: ReadRequest) -> RowPage:
    backend = session.get_bind().dialect.name
    plan = Plan.of(Layout.of(schema), request, backend=backend)
    rows = (await session.execute(plan.page(request.limit))).all()
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    shown = len(plan.shown)
    return RowPage(
        rows=[record(plan.shown, row[:shown]) for row in rows],
        next=plan.cursor_after(rows[-1]) if more else None,
        count=None if request.count is None else await _count(session, plan, request.count),
    )


async def _count(session: AsyncSession, plan: Plan, mode: CountMode) -> int:
    if mode == "estimated" and not plan.filters and session.get_bind().dialect.name == "postgresql":
        estimate = await _planner_estimate(session, plan.layout.table.name)
        if estimate is not None:
            return estimate
    statement = select(func.count()).select_from(plan.layout.table).where(plan.where())
    return int(await session.scalar(statement) or 0)


async def _planner_estimate(session: AsyncSession, table_name: str) -> int | None:
    """PostgreSQL's own row estimate (kept by VACUUM and ANALYZE); None before the first."""
    estimate = await session.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"),
        {"name": table_name},
    )
    return None if estimate is None or estimate < 0 else round(estimate)
