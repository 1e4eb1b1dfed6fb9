"""Writing converted records into a dataset's table, fast, per backend and conflict mode.

PostgreSQL: COPY (asyncpg ``copy_records_to_table``), straight into the table, or into a
temporary staging table first when conflicts are to be skipped or turned into updates.
SQLite: ``executemany`` inside the request's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import MetaData, Table, insert, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.errors import Conflict
from tablehouse.rows.layout import Layout

OnConflict = Literal["error", "skip", "update"]
Record = tuple[Any, ...]


class Writer:
    def __init__(self, session: AsyncSession, layout: Layout, on_conflict: OnConflict) -> None:
        self.session = session
        self.layout = layout
        self.on_conflict = on_conflict
        self.table: Table = layout.table
        self.key_positions = [layout.names.index(name) for name in layout.key]
        self._staging: Table | None = None
        self._json_positions = [i for i, f in enumerate(layout.fields) if f.type == "json"]
        self.backend = session.get_bind().dialect.name

    async def write(self, records: Sequence[Record], rows: Sequence[int]) -> int:
        """Write one batch; ``rows`` are the records' row numbers, for error messages."""
        records, rows = self._unique_keys(records, rows)
        try:
            if self.backend == "postgresql":
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
        if self.on_conflict == "error" and self.backend == "postgresql":
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
