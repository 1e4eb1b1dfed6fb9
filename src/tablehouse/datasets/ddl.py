"""A dataset's table, built from its fields with SQLAlchemy Core, and changes to it.

Field names reach SQL only as quoted identifiers through SQLAlchemy; the table name is
generated. The same definition compiles to PostgreSQL and SQLite DDL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    Double,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    event,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.elements import ColumnElement, TextClause, quoted_name
from sqlalchemy.types import TypeEngine

from tablehouse.core import query_roles
from tablehouse.core.database import Backend, backend_of
from tablehouse.core.models import NAMING_CONVENTION, UTCDateTime
from tablehouse.datasets.schemas import AddField, Change, DropField, FieldSpec, RenameField

# PGDialect's constructor is untyped; the cast keeps mypy --strict honest about it.
DIALECTS: dict[str, Dialect] = {
    "postgresql": cast(Callable[[], Dialect], PGDialect)(),
    "sqlite": SQLiteDialect(),
}


def column_type(spec: FieldSpec) -> TypeEngine[Any]:
    match spec.type:
        case "string":
            return String(spec.max_length) if spec.max_length else Text()
        case "integer":
            return BigInteger()
        case "float":
            return Double()
        case "boolean":
            return Boolean()
        case "datetime":
            return UTCDateTime()
        case "date":
            return Date()
        case "json":
            # none_as_null: a missing value is SQL NULL on both backends, never the JSON null.
            return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
        case "uuid":
            return Uuid()
    raise AssertionError(spec.type)


def _server_default(spec: FieldSpec) -> str | ColumnElement[Any] | TextClause | None:
    """The default as SQL. Strings are quoted by SQLAlchemy; numbers were validated finite."""
    value = spec.default
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return true() if value else false()
    return text(repr(value))


def column(spec: FieldSpec) -> Column[Any]:
    return Column(
        quoted_name(spec.name, quote=True),
        column_type(spec),
        primary_key=spec.primary_key,
        autoincrement=False,
        nullable=spec.is_nullable,
        unique=spec.unique and not spec.primary_key,
        server_default=_server_default(spec),
        comment=None,
    )


def table(table_name: str, fields: Sequence[FieldSpec]) -> Table:
    return Table(
        table_name, MetaData(naming_convention=NAMING_CONVENTION), *(column(f) for f in fields)
    )


def create_statements(table_name: str, fields: Sequence[FieldSpec]) -> dict[str, str]:
    """The CREATE TABLE each backend would run, for reports and the version history."""
    definition = table(table_name, fields)
    return {
        name: str(CreateTable(definition).compile(dialect=dialect)).strip()
        for name, dialect in DIALECTS.items()
    }


@contextmanager
def recording(connection: Connection) -> Iterator[list[str]]:
    """Collect the SQL statements run on ``connection`` inside the block."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.strip())

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", record)


def create(
    connection: Connection,
    table_name: str,
    fields: Sequence[FieldSpec],
    *,
    reader_role: str | None = None,
) -> list[str]:
    """Create the table; on PostgreSQL, ``reader_role`` (the owner's role, which the
    owner's SQL runs as) is made if missing and may then read it."""
    with recording(connection) as statements:
        table(table_name, fields).create(connection)
    if reader_role is not None and backend_of(connection) == Backend.POSTGRESQL:
        query_roles.ensure(connection, reader_role)
        query_roles.grant_select(connection, reader_role, table_name)
    return statements


def drop(connection: Connection, table_name: str) -> None:
    Table(table_name, MetaData()).drop(connection)


def apply(
    connection: Connection,
    table_name: str,
    fields: Sequence[FieldSpec],
    changes: Sequence[Change],
) -> list[str]:
    """ALTER the table by ``changes``; on SQLite, Alembic's batch mode rebuilds it as needed."""
    operations = Operations(MigrationContext.configure(connection))
    with (
        recording(connection) as statements,
        operations.batch_alter_table(
            table_name, copy_from=table(table_name, fields), recreate="auto"
        ) as batch,
    ):
        for change in changes:
            _ALTERATIONS[type(change)](batch, change, table_name)
    return statements


def _add(batch: Any, change: Any, table_name: str) -> None:
    spec: FieldSpec = change.field
    if not spec.unique or spec.primary_key:
        batch.add_column(column(spec))
        return
    # Batch mode (SQLite) cannot add the unnamed constraint a unique column carries: add the
    # column, then the constraint under the name CREATE TABLE would have given it.
    batch.add_column(column(spec.model_copy(update={"unique": False})))
    name = NAMING_CONVENTION["uq"] % {"table_name": table_name, "column_0_N_name": spec.name}
    batch.create_unique_constraint(name, [quoted_name(spec.name, quote=True)])


def _drop(batch: Any, change: Any, _table_name: str) -> None:
    batch.drop_column(quoted_name(change.name, quote=True))


def _rename(batch: Any, change: Any, _table_name: str) -> None:
    batch.alter_column(
        quoted_name(change.name, quote=True),
        new_column_name=quoted_name(change.new_name, quote=True),
    )


_ALTERATIONS: dict[type, Callable[[Any, Any, str], None]] = {
    AddField: _add,
    DropField: _drop,
    RenameField: _rename,
}
