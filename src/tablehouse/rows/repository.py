"""Every statement on a dataset's rows: listing pages and counts, one row by its key (read,
change, delete), and writing converted records fast, per backend and conflict mode.

Writing: on PostgreSQL COPY (asyncpg ``copy_records_to_table``), straight into the table, or
into a temporary staging table first when conflicts are to be skipped or turned into updates;
on SQLite ``executemany`` inside the request's transaction.

Every by-key statement is bounded by all of the key's fields (``_matches``), so no request can
change or delete more than the one row it names.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import orjson
from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import (
    ColumnElement,
    MetaData,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    null,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from tablehouse.core.database import Backend, ReadSession, WriteSession, backend_of
from tablehouse.datasets.models import Dataset
from tablehouse.errors import Conflict
from tablehouse.rows.convert.layout import CACHED_LAYOUTS, Layout, Record
from tablehouse.rows.filtering.listing import Plan
from tablehouse.rows.filtering.ordering import after, order_by
from tablehouse.rows.schemas import CountMode, OnConflict

# Listing


async def page(session: ReadSession, plan: Plan, limit: int) -> Sequence[Row[Any]]:
    """The plan's rows, one more than ``limit``: the extra one tells whether there is a next
    page."""
    table = plan.layout.table
    statement = select(*(table.c[name] for name in plan.fetched)).where(plan.where())
    if plan.start_after is not None:
        statement = statement.where(after(table, plan.keys, plan.start_after))
    statement = statement.order_by(*order_by(table, plan.keys)).limit(limit + 1)
    return (await session.execute(statement)).all()


async def count(session: ReadSession, plan: Plan, mode: CountMode) -> int:
    if mode == "estimated" and not plan.filters and backend_of(session) == Backend.POSTGRESQL:
        estimate = await _planner_estimate(session, plan.layout.table.name)
        if estimate is not None:
            return estimate
    statement = select(func.count()).select_from(plan.layout.table).where(plan.where())
    return int(await session.scalar(statement) or 0)


async def _planner_estimate(session: ReadSession, table_name: str) -> int | None:
    """PostgreSQL's own row estimate (kept by VACUUM and ANALYZE); None before the first."""
    estimate = await session.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"),
        {"name": table_name},
    )
    return None if estimate is None or estimate < 0 else round(estimate)


# One row by its key


@lru_cache(maxsize=CACHED_LAYOUTS)
def _by_key(table: Table, key: tuple[str, ...]) -> Select[Any]:
    """SELECT of every field of the row whose key fields equal the parameters key_0, key_1...
    Built once per table: the same object every time, so SQLAlchemy finds it compiled in its
    cache."""
    return select(table).where(_key_parameters(table, key))


@lru_cache(maxsize=CACHED_LAYOUTS)
def _checked_by_key(table: Table, key: tuple[str, ...]) -> Select[Any]:
    """The row by key outer-joined to the dataset's catalog row (parameter dataset_id): its
    version first, then the fields (null when there is no such row)."""
    catalog = Dataset.__table__
    return (
        select(catalog.c.version, *table.c)
        .select_from(catalog.outerjoin(table, _key_parameters(table, key)))
        .where(catalog.c.id == bindparam("dataset_id"))
    )


def _key_parameters(table: Table, key: Sequence[str]) -> ColumnElement[bool]:
    return and_(*(table.c[name] == bindparam(f"key_{n}") for n, name in enumerate(key)))


def _parameters(layout: Layout, key_values: Sequence[Any]) -> dict[str, Any]:
    if len(key_values) != len(layout.key) or not layout.key:
        raise AssertionError("a row is named by all of its key fields")
    return {f"key_{n}": value for n, value in enumerate(key_values)}


async def by_key(
    session: ReadSession, layout: Layout, key_values: Sequence[Any]
) -> Row[Any] | None:
    """The row whose key fields hold ``key_values``. Core, on the unit of work's connection."""
    statement = _by_key(layout.table, tuple(layout.key))
    connection = await session.connection()
    row: Row[Any] | None = (
        await connection.execute(statement, _parameters(layout, key_values))
    ).first()
    return row


async def checked_by_key(
    session: ReadSession, layout: Layout, dataset_id: uuid.UUID, key_values: Sequence[Any]
) -> Row[Any] | None:
    """``(version, *fields)``: the dataset's catalog version and the row by key, read in one
    statement (one snapshot); the fields are null when there is no such row, and there is
    no row at all when the dataset is gone."""
    statement = _checked_by_key(layout.table, tuple(layout.key))
    parameters = _parameters(layout, key_values)
    parameters["dataset_id"] = dataset_id
    connection = await session.connection()
    row: Row[Any] | None = (await connection.execute(statement, parameters)).first()
    return row


def _matches(layout: Layout, key_values: Sequence[Any]) -> ColumnElement[bool]:
    """Exactly one row: every key field equals its value (never fewer conditions)."""
    if len(key_values) != len(layout.key) or not layout.key:
        raise AssertionError("a row is named by all of its key fields")
    return and_(
        *(layout.table.c[name] == value for name, value in zip(layout.key, key_values, strict=True))
    )


async def update_by_key(
    session: WriteSession, layout: Layout, key_values: Sequence[Any], values: Mapping[str, Any]
) -> Row[Any] | None:
    """Set ``values`` in the row by key; the row as it is now, or None when there is none.
    IntegrityError when a unique field's value is taken."""
    table = layout.table
    statement = (
        update(table)
        .where(_matches(layout, key_values))
        .values({table.c[name]: null() if v is None else v for name, v in values.items()})
        .returning(*table.c)
    )
    return (await session.execute(statement)).first()


async def delete_by_key(session: WriteSession, layout: Layout, key_values: Sequence[Any]) -> bool:
    """Delete the row by key; whether there was one."""
    first_key = layout.table.c[layout.key[0]]
    statement = delete(layout.table).where(_matches(layout, key_values)).returning(first_key)
    return (await session.execute(statement)).first() is not None


# Writing records


class Writer:
    """Writes batches of records into one dataset's table within one unit of work."""

    def __init__(self, session: WriteSession, layout: Layout, on_conflict: OnConflict) -> None:
        self.session = session
        self.layout = layout
        self.on_conflict = on_conflict
        self.table: Table = layout.table
        self.key_positions = [layout.names.index(name) for name in layout.key]
        self._staging: Table | None = None
        self._json_positions = [i for i, f in enumerate(layout.fields) if f.type == "json"]
        self.backend = backend_of(session)

    async def write(self, records: Sequence[Record], rows: Sequence[int]) -> int:
        """Write one batch; ``rows`` are the records' row numbers, for error messages."""
        records, rows = self._unique_keys(records, rows)
        try:
            if self.backend == Backend.POSTGRESQL:
                return await self._write_postgresql(records, rows)
            return await self._write_sqlite(records, rows)
        except IntegrityError as exc:
            raise Conflict(
                f"the rows break a unique constraint ({_constraint(exc)})", code="unique_violation"
            ) from None
        except UniqueViolationError as exc:  # from COPY, which bypasses SQLAlchemy
            raise self._copy_conflict(exc, records, rows) from None

    def _copy_conflict(
        self, exc: UniqueViolationError, records: Sequence[Record], rows: Sequence[int]
    ) -> Conflict:
        """PostgreSQL names the key ("Key (id)=(5) already exists."): find its row."""
        detail = str(getattr(exc, "detail", "") or "")
        if exc.constraint_name == f"pk_{self.table.name}":
            for index, record in enumerate(records):
                shown = ", ".join(str(v) for v in self._key(record))
                if f"=({shown})" in detail:
                    return self._duplicate(self._key(record), rows[index])
        return Conflict(
            f"the rows break a unique constraint ({exc.constraint_name}): {detail}",
            code="unique_violation",
        )

    def _key(self, record: Record) -> tuple[Any, ...]:
        return tuple(record[i] for i in self.key_positions)

    def _unique_keys(
        self, records: Sequence[Record], rows: Sequence[int]
    ) -> tuple[Sequence[Record], Sequence[int]]:
        """One record per key within the batch: an error, the first, or the last of them."""
        if self.on_conflict == "error" and self.backend == Backend.POSTGRESQL:
            return records, rows  # COPY refuses a repeated key itself, naming it
        if len(self.key_positions) == 1:
            position = self.key_positions[0]
            if len({record[position] for record in records}) == len(records):
                return records, rows
        seen: dict[tuple[Any, ...], int] = {}
        for index, record in enumerate(records):
            key = self._key(record)
            if key in seen and self.on_conflict == "error":
                raise self._duplicate(key, rows[index])
            if key not in seen or self.on_conflict == "update":
                seen[key] = index
        if len(seen) == len(records):
            return records, rows
        kept = sorted(seen.values())
        return [records[i] for i in kept], [rows[i] for i in kept]

    def _duplicate(self, key: tuple[Any, ...], row: int) -> Conflict:
        shown = ", ".join(
            f"{name}={value}" for name, value in zip(self.layout.key, key, strict=True)
        )
        return Conflict(f"row {row}: a row with key {shown} already exists", code="duplicate_key")

    async def _existing_key(self, records: Sequence[Record]) -> tuple[Any, ...] | None:
        columns = [self.table.c[name] for name in self.layout.key]
        keys = [self._key(record) for record in records]
        match = (
            columns[0].in_([k[0] for k in keys])
            if len(columns) == 1
            else tuple_(*columns).in_(keys)
        )
        found = (await self.session.execute(select(*columns).where(match).limit(1))).first()
        return None if found is None else tuple(found)

    async def _refuse_existing(self, records: Sequence[Record], rows: Sequence[int]) -> None:
        existing = await self._existing_key(records)
        if existing is not None:
            index = next(i for i, r in enumerate(records) if self._key(r) == existing)
            raise self._duplicate(existing, rows[index])

    async def _write_sqlite(self, records: Sequence[Record], rows: Sequence[int]) -> int:
        if self.on_conflict == "error":
            await self._refuse_existing(records, rows)
            statement: Any = insert(self.table)
        else:
            statement = sqlite_insert(self.table)
            statement = self._on_conflict(statement)
        values = [dict(zip(self.layout.names, record, strict=True)) for record in records]
        result = await self.session.execute(statement, values)
        return int(getattr(result, "rowcount", len(values)))

    def _on_conflict(self, statement: Any) -> Any:
        updates = {n: statement.excluded[n] for n in self.layout.names if n not in self.layout.key}
        if self.on_conflict == "skip" or not updates:
            return statement.on_conflict_do_nothing(index_elements=self.layout.key)
        return statement.on_conflict_do_update(index_elements=self.layout.key, set_=updates)

    async def _write_postgresql(self, records: Sequence[Record], rows: Sequence[int]) -> int:
        if self.on_conflict == "error":
            await self._copy(self.table.name, records)
            return len(records)
        staging = await self._staging_table()
        await self._copy(staging.name, records)
        source = select(*staging.c)
        statement = self._on_conflict(pg_insert(self.table).from_select(self.layout.names, source))
        result = await self.session.execute(statement)
        await self.session.execute(text(f"TRUNCATE {staging.name}"))
        return int(getattr(result, "rowcount", 0))

    async def _staging_table(self) -> Table:
        """A temporary copy of the table for this transaction; its name is ours, not a user's."""
        if self._staging is None:
            name = f"staging_{uuid.uuid4().hex}"
            await self.session.execute(
                text(
                    f"CREATE TEMPORARY TABLE {name} "
                    f"(LIKE {self.table.name} INCLUDING DEFAULTS) ON COMMIT DROP"
                )
            )
            self._staging = self.table.to_metadata(MetaData(), name=name)
        return self._staging

    async def _copy(self, table_name: str, records: Sequence[Record]) -> None:
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(
            table_name, records=self._for_copy(records), columns=self.layout.names
        )

    def _for_copy(self, records: Sequence[Record]) -> Sequence[Record]:
        """asyncpg's COPY takes JSON as text."""
        if not self._json_positions:
            return records
        converted = []
        for record in records:
            values = list(record)
            for i in self._json_positions:
                if values[i] is not None:
                    values[i] = orjson.dumps(values[i]).decode()
            converted.append(tuple(values))
        return converted


def _constraint(exc: IntegrityError) -> str:
    original = getattr(exc.orig, "__cause__", None) or exc.orig
    name = getattr(original, "constraint_name", None)
    return str(name) if name else str(exc.orig).splitlines()[0][:200]
