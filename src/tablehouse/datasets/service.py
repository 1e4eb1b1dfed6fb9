"""Dataset rules: define, evolve and drop a dataset together with its table."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from tablehouse.auth.principal import Principal
from tablehouse.core import query_roles
from tablehouse.core.database import Backend, ReadSession, WriteSession, backend_of
from tablehouse.core.query_roles import owner_role
from tablehouse.datasets import ddl, repository
from tablehouse.datasets.models import Dataset, DatasetVersion, physical_table_name
from tablehouse.datasets.schemas import (
    AddField,
    Change,
    DropField,
    FieldSpec,
    Problem,
    RenameField,
    SchemaCreate,
    SchemaUpdate,
    ValidationReport,
)
from tablehouse.errors import Conflict, InvalidInput, Location, NotFound

ProblemList = list[tuple[Location, str, str]]


def definition_problems(spec: SchemaCreate, *, max_fields: int) -> ProblemList:
    """Rules across fields, which the per-field validation cannot see."""
    problems: ProblemList = []
    if len(spec.fields) > max_fields:
        problems.append((("body", "fields"), f"at most {max_fields} fields", "too_many_fields"))
    problems += _duplicate_names(spec.fields, ("body", "fields"))
    if not any(field.primary_key for field in spec.fields):
        problems.append(
            (("body", "fields"), "at least one field must be the primary key", "no_primary_key")
        )
    return problems


def _duplicate_names(fields: Sequence[FieldSpec], where: Location) -> ProblemList:
    seen: set[str] = set()
    problems: ProblemList = []
    for index, field in enumerate(fields):
        key = field.name.lower()
        if key in seen:
            problems.append(
                (
                    (*where, index, "name"),
                    f"'{field.name}' is used twice (names are compared ignoring case)",
                    "duplicate_name",
                )
            )
        seen.add(key)
    return problems


async def validate(
    session: ReadSession, *, owner_id: uuid.UUID, body: Any, max_fields: int
) -> ValidationReport:
    """What creating ``body`` would do, or why it would be refused; nothing is written."""
    try:
        spec = SchemaCreate.model_validate(body)
    except ValidationError as exc:
        problems = [
            Problem(loc=["body", *error["loc"]], msg=error["msg"], type=error["type"])
            for error in exc.errors()
        ]
        return ValidationReport(valid=False, problems=problems)
    found = definition_problems(spec, max_fields=max_fields)
    if await repository.by_name(session, owner_id, spec.name) is not None:
        found.append((("body", "name"), f"you already have a dataset named '{spec.name}'", "taken"))
    if found:
        return ValidationReport(
            valid=False,
            problems=[Problem(loc=list(loc), msg=msg, type=kind) for loc, msg, kind in found],
        )
    return ValidationReport(
        valid=True, ddl=ddl.create_statements(physical_table_name(uuid.uuid4()), spec.fields)
    )


async def create(
    session: WriteSession,
    *,
    owner_id: uuid.UUID,
    spec: SchemaCreate,
    max_fields: int,
    query_role: str | None = None,
) -> Dataset:
    """Record the dataset and make its table; ``query_role`` is QUERY_DATABASE_ROLE, whose
    owner role (``query_roles.owner_role``) is allowed to read the new table."""
    problems = definition_problems(spec, max_fields=max_fields)
    if problems:
        raise InvalidInput.of(problems)
    if await repository.by_name(session, owner_id, spec.name) is not None:
        raise _taken(spec.name)
    schema_id = uuid.uuid4()
    fields = [field.model_dump() for field in spec.fields]
    dataset = Dataset(
        id=schema_id,
        owner_id=owner_id,
        name=spec.name,
        description=spec.description,
        version=1,
        table_name=physical_table_name(schema_id),
        fields=fields,
    )
    try:
        # The catalog row first: a concurrent create of the same name fails here, on the
        # unique constraint, before it has made a table.
        await repository.add(session, dataset)
    except IntegrityError:
        raise _taken(spec.name) from None
    statements = await session.run_sync(
        lambda sync: ddl.create(
            sync.connection(),
            dataset.table_name,
            spec.fields,
            reader_role=None if query_role is None else owner_role(query_role, owner_id),
        )
    )
    await repository.add(
        session,
        DatasetVersion(
            schema_id=schema_id,
            number=1,
            fields=fields,
            change={"op": "create"},
            ddl=";\n".join(statements),
            author_id=owner_id,
        ),
    )
    return dataset


# A dataset dropped or changed while a reader held its old definition: the reader's
# statement names a table or column that is gone (PostgreSQL: undefined_table, _column).
_CHANGED_MEANWHILE = frozenset({"42P01", "42703"})
_SQLITE_CHANGED_MEANWHILE = ("no such table", "no such column")


def changed_meanwhile(error: DBAPIError) -> bool:
    """Whether a statement failed because the dataset it was built for changed or went."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return str(sqlstate) in _CHANGED_MEANWHILE
    return str(error.orig).startswith(_SQLITE_CHANGED_MEANWHILE)


def owner_of(caller: Principal, owner_id: uuid.UUID | None) -> uuid.UUID:
    """Whose datasets a request means: the caller's own, or (admins only) ``owner_id``'s."""
    return caller.user.id if owner_id is None or not caller.is_admin else owner_id


def _taken(name: str) -> Conflict:
    return Conflict(f"you already have a dataset named '{name}'", code="schema_exists")


async def load(
    session: ReadSession, *, caller: Principal, name: str, owner_id: uuid.UUID | None = None
) -> Dataset:
    """The caller's dataset ``name`` (an admin may name another owner); otherwise 404. Its
    catalog row is read without a lock (see ``changed_meanwhile`` for a reader that finds
    the dataset changed or gone by the time it reads the table)."""
    owner = owner_of(caller, owner_id)
    dataset = None
    if caller.may_use_dataset(name):
        dataset = await repository.by_name(session, owner, name)
    return _found(dataset, name)


async def load_locked(
    session: WriteSession,
    *,
    caller: Principal,
    name: str,
    owner_id: uuid.UUID | None = None,
    lock: repository.Lock,
) -> Dataset:
    """As ``load``, with the catalog row locked until the unit of work ends (see
    ``repository.locked_by_name``): "share" to write rows, "update" to change or drop it."""
    owner = owner_of(caller, owner_id)
    dataset = None
    if caller.may_use_dataset(name):
        dataset = await repository.locked_by_name(session, owner, name, lock=lock)
    return _found(dataset, name)


def _found(dataset: Dataset | None, name: str) -> Dataset:
    if dataset is None:
        raise NotFound(f"no dataset named '{name}'", code="schema_not_found")
    return dataset


async def page(
    session: ReadSession, *, caller: Principal, limit: int, offset: int
) -> tuple[list[tuple[Dataset, int]], int]:
    # The key's restriction is part of the query, so the page and its total agree.
    found, total = await repository.page(
        session, caller.user.id, limit=limit, offset=offset, only=caller.datasets
    )
    counted = [
        (dataset, await repository.row_count(session, dataset.table_name)) for dataset in found
    ]
    return counted, total


async def row_count(session: ReadSession, dataset: Dataset) -> int:
    return await repository.row_count(session, dataset.table_name)


async def update(
    session: WriteSession,
    *,
    dataset: Dataset,
    author_id: uuid.UUID,
    request: SchemaUpdate,
    max_fields: int,
) -> Dataset:
    fields = [FieldSpec.model_validate(field) for field in dataset.fields]
    new_fields = planned_fields(fields, request.changes, max_fields=max_fields)
    await _ensure_existing_rows_allow(session, dataset, request.changes)
    statements: list[str] = []
    if request.changes:
        try:
            statements = await session.run_sync(
                lambda sync: ddl.apply(
                    sync.connection(), dataset.table_name, fields, request.changes
                )
            )
        except (IntegrityError, DBAPIError) as exc:
            raise Conflict(
                f"the existing rows do not allow this change ({type(exc.orig).__name__})",
                code="change_conflicts_with_rows",
            ) from None
    if request.description is not None:
        dataset.description = request.description
    dataset.version += 1
    dataset.fields = [field.model_dump() for field in new_fields]
    await repository.add(
        session,
        DatasetVersion(
            schema_id=dataset.id,
            number=dataset.version,
            fields=dataset.fields,
            change=request.model_dump(exclude_none=True),
            ddl=";\n".join(statements),
            author_id=author_id,
        ),
    )
    return dataset


def planned_fields(
    fields: list[FieldSpec], changes: Sequence[Change], *, max_fields: int
) -> list[FieldSpec]:
    """The fields after ``changes``, or InvalidInput naming each change that cannot apply."""
    result = list(fields)
    problems: ProblemList = []
    for index, change in enumerate(changes):
        where: Location = ("body", "changes", index)
        problem = _apply_change(result, change)
        if problem is not None:
            problems.append(((*where, problem[0]), problem[1], problem[2]))
    if len(result) > max_fields:
        problems.append((("body", "changes"), f"at most {max_fields} fields", "too_many_fields"))
    if problems:
        raise InvalidInput.of(problems)
    return result


def _position(fields: list[FieldSpec], name: str) -> int | None:
    return next((i for i, field in enumerate(fields) if field.name == name), None)


def _taken_name(fields: list[FieldSpec], name: str) -> bool:
    return any(field.name.lower() == name.lower() for field in fields)


def _apply_change(fields: list[FieldSpec], change: Change) -> tuple[str, str, str] | None:
    """Apply one change to ``fields`` in place, or say why it cannot be applied."""
    if isinstance(change, AddField):
        if _taken_name(fields, change.field.name):
            return ("field", f"a field named '{change.field.name}' exists", "duplicate_name")
        if change.field.primary_key:
            return ("field", "a primary key cannot be added to an existing table", "primary_key")
        fields.append(change.field)
        return None
    index = _position(fields, change.name)
    if index is None:
        return ("name", f"no field named '{change.name}'", "unknown_field")
    if isinstance(change, DropField):
        if fields[index].primary_key:
            return ("name", "a primary-key field cannot be dropped", "primary_key")
        del fields[index]
        return None
    assert isinstance(change, RenameField)
    others = fields[:index] + fields[index + 1 :]
    if _taken_name(others, change.new_name):
        return ("new_name", f"a field named '{change.new_name}' exists", "duplicate_name")
    fields[index] = fields[index].model_copy(update={"name": change.new_name})
    return None


async def _ensure_existing_rows_allow(
    session: WriteSession, dataset: Dataset, changes: Sequence[Change]
) -> None:
    required = [
        change.field.name
        for change in changes
        if isinstance(change, AddField)
        and not change.field.is_nullable
        and change.field.default is None
    ]
    if not required:
        return
    rows = await repository.row_count(session, dataset.table_name)
    if rows:
        raise Conflict(
            f"'{required[0]}' is required but has no default, and the table has {rows} rows: "
            "give it a default or make it nullable",
            code="table_not_empty",
        )


async def delete(session: WriteSession, *, dataset: Dataset) -> None:
    table_name = dataset.table_name
    await session.delete(dataset)
    await session.flush()
    await session.run_sync(lambda sync: ddl.drop(sync.connection(), table_name))


async def grant_owner_roles(session: WriteSession, *, query_role: str) -> int:
    """Make each owner's query role if missing and grant it that owner's tables, again, and
    take them from the shared role (``query_role``): the repair after a restore into a
    cluster that lacks the roles, or after a rolling upgrade in which processes of the
    version before granted new tables to the shared role (PostgreSQL; SQLite has no roles).
    Returns the number of tables granted."""
    tables = await repository.owners_tables(session)

    def grant(connection: Connection) -> int:
        if backend_of(connection) != Backend.POSTGRESQL:
            return 0
        for owner_id in {owner_id for owner_id, _ in tables}:
            query_roles.ensure(connection, owner_role(query_role, owner_id))
        for owner_id, table_name in tables:
            query_roles.grant_select(connection, owner_role(query_role, owner_id), table_name)
            query_roles.revoke_select(connection, query_role, table_name)
        return len(tables)

    return await session.run_sync(lambda sync: grant(sync.connection()))


async def versions(session: ReadSession, dataset: Dataset) -> list[DatasetVersion]:
    return await repository.versions(session, dataset.id)
