"""One row, named by its primary key: read it, change some of its fields, or delete it.

Every statement here is bounded by all of the key's fields (``keys.matches``), so no request
can change or delete more than the one row it names.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, null, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.auth.principal import Principal
from tablehouse.datasets import service as datasets
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


# Datasets a read by key found, per process: the next read of the same dataset checks the
# catalog in the statement that reads the row, one round trip instead of two.
KNOWN_DATASETS = 1024


@dataclass(frozen=True, slots=True)
class _Known:
    schema_id: uuid.UUID
    version: int
    layout: Layout


_known: OrderedDict[tuple[uuid.UUID, str], _Known] = OrderedDict()


async def read_one(
    session: AsyncSession,
    *,
    caller: Principal,
    name: str,
    owner_id: uuid.UUID | None,
    key: str,
) -> dict[str, Any]:
    """The row ``key`` of the caller's dataset ``name`` (see ``get``), or 404.

    A dataset read before is read again through the layout kept from then, in one statement
    that also reads the dataset's catalog row: if that row is gone or at another version,
    or the table is, the kept layout is forgotten and the dataset is looked up afresh. The
    catalog check and the row come from one snapshot, so a changed dataset is never read
    through an old layout, whichever process changed it.
    """
    remembered = (datasets.owner_of(caller, owner_id), name)
    known = _known.get(remembered) if caller.may_use_dataset(name) else None
    if known is not None:
        found = await _read_known(session, known, key)
        if found is not None:
            return found
        _known.pop(remembered, None)

    async def get_and_remember(schema: Schema) -> dict[str, Any]:
        row = await get(session, schema=schema, key=key)
        _remember(remembered, _Known(schema.id, schema.version, Layout.of(schema)))
        return row

    return await datasets.read(
        session, caller=caller, name=name, owner_id=owner_id, reader=get_and_remember
    )


async def _read_known(session: AsyncSession, known: _Known, key: str) -> dict[str, Any] | None:
    """The row through a kept layout; None when the layout may be out of date."""
    layout = known.layout
    assert layout.checked_by_key is not None
    try:
        values = keys.values(layout, key)
    except InvalidInput:
        return None  # refused by the kept layout: let the current one say why
    parameters = {f"key_{n}": value for n, value in enumerate(values)}
    parameters["schema_id"] = known.schema_id
    connection = await session.connection()
    try:
        row = (await connection.execute(layout.checked_by_key, parameters)).first()
    except DBAPIError as exc:
        if not datasets.changed_meanwhile(exc):
            raise
        await session.rollback()
        return None
    if row is None or row[0] != known.version:
        return None
    fields = row[1:]
    if fields[layout.names.index(layout.key[0])] is None:  # a key field is never null
        raise _not_found(key)
    return record(layout.names, fields)


def _remember(remembered: tuple[uuid.UUID, str], known: _Known) -> None:
    _known[remembered] = known
    _known.move_to_end(remembered)
    if len(_known) > KNOWN_DATASETS:
        _known.popitem(last=False)


async def get(session: AsyncSession, *, schema: Schema, key: str) -> dict[str, Any]:
    layout = Layout.of(schema)
    values = keys.values(layout, key)
    if layout.by_key is None or len(values) != len(layout.key):
        raise AssertionError("a row is named by all of its key fields")
    # The layout's own statement, built once: the same object every time, so SQLAlchemy
    # finds it compiled in its cache. Core, on the unit of work's connection.
    connection = await session.connection()
    parameters = {f"key_{n}": value for n, value in enumerate(values)}
    row = (await connection.execute(layout.by_key, parameters)).first()
    if row is None:
        raise _not_found(key)
    return record(layout.names, row)


async def patch(session: AsyncSession, *, schema: Schema, key: str, changes: Any) -> dict[str, Any]:
    """Set the fields in ``changes`` (a JSON object), checked as ingest checks them."""
    layout = Layout.of(schema, storing_in=session.get_bind().dialect.name)
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
