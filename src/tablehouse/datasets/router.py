"""/schemas: the seven dataset endpoints."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status

from tablehouse.api.dependencies import ReadSessionDep, RuntimeDep, WriteSessionDep
from tablehouse.api.pagination import Limit, Offset, Page
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, WITH_BODY, errors
from tablehouse.auth.dependencies import ReadAccess, WriteAccess
from tablehouse.datasets import service
from tablehouse.datasets.models import Schema
from tablehouse.datasets.schemas import (
    SchemaCreate,
    SchemaRead,
    SchemaUpdate,
    SchemaVersionRead,
    ValidationReport,
)

router = APIRouter(prefix=f"{API_PREFIX}/schemas", tags=["schemas"], responses=AUTHENTICATED)

NAMED = errors(404)
OwnerQuery = Annotated[uuid.UUID | None, Query(description="Admins: act on another user's dataset")]


def _read(schema: Schema, row_count: int) -> SchemaRead:
    return SchemaRead.model_validate(schema).model_copy(update={"row_count": row_count})


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Define a dataset; creates its table",
    responses={**WITH_BODY, **errors(409)},
)
async def create_schema(
    body: SchemaCreate, caller: WriteAccess, session: WriteSessionDep, runtime: RuntimeDep
) -> SchemaRead:
    schema = await service.create(
        session,
        owner_id=caller.user.id,
        spec=body,
        max_fields=runtime.settings.max_schema_fields,
        query_role=runtime.settings.query_database_role,
    )
    return _read(schema, 0)


@router.get("", summary="Your datasets, with row counts")
async def list_schemas(
    caller: ReadAccess, session: ReadSessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[SchemaRead]:
    counted, total = await service.page(session, caller=caller, limit=limit, offset=offset)
    return Page[SchemaRead](
        items=[_read(schema, rows) for schema, rows in counted],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/validate",
    summary="Check a definition and show its DDL; writes nothing",
    responses=WITH_BODY,
)
async def validate_schema(
    caller: ReadAccess,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    body: Annotated[dict[str, Any], Body(description="A body as for POST /schemas")],
) -> ValidationReport:
    return await service.validate(
        session, owner_id=caller.user.id, body=body, max_fields=runtime.settings.max_schema_fields
    )


@router.get("/{name}", summary="One dataset with its current version and fields", responses=NAMED)
async def read_schema(
    name: str, caller: ReadAccess, session: ReadSessionDep, owner: OwnerQuery = None
) -> SchemaRead:
    schema = await service.load(session, caller=caller, name=name, owner_id=owner)
    return _read(schema, await service.row_count(session, schema))


@router.patch(
    "/{name}",
    summary="Change the description or fields; one new version",
    responses={**NAMED, **WITH_BODY, **errors(409)},
)
async def update_schema(
    name: str,
    body: SchemaUpdate,
    caller: WriteAccess,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    owner: OwnerQuery = None,
) -> SchemaRead:
    schema = await service.load(session, caller=caller, name=name, owner_id=owner, lock="update")
    updated = await service.update(
        session,
        schema=schema,
        author_id=caller.user.id,
        request=body,
        max_fields=runtime.settings.max_schema_fields,
    )
    return _read(updated, await service.row_count(session, updated))


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Drop the dataset and its table",
    responses=NAMED,
)
async def delete_schema(
    name: str, caller: WriteAccess, session: WriteSessionDep, owner: OwnerQuery = None
) -> None:
    schema = await service.load(session, caller=caller, name=name, owner_id=owner, lock="update")
    await service.delete(session, schema=schema)


@router.get(
    "/{name}/versions", summary="Every version and the change that made it", responses=NAMED
)
async def list_versions(
    name: str, caller: ReadAccess, session: ReadSessionDep, owner: OwnerQuery = None
) -> list[SchemaVersionRead]:
    schema = await service.load(session, caller=caller, name=name, owner_id=owner)
    return [SchemaVersionRead.model_validate(v) for v in await service.versions(session, schema)]
