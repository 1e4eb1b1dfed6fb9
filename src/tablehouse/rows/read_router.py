"""/schemas/{name}/rows: list rows, and read, change or delete one row by its key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, status

from tablehouse.api.dependencies import SessionDep
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, WITH_BODY, errors
from tablehouse.auth.dependencies import ReadAccess, WriteAccess
from tablehouse.datasets import service as datasets
from tablehouse.datasets.router import OwnerQuery
from tablehouse.rows import reading, records
from tablehouse.rows.ordering import ORDER_PATTERN, SELECT_PATTERN
from tablehouse.rows.reading import DEFAULT_LIMIT, MAX_LIMIT, CountMode, ReadRequest, RowPage

# Every operation names a dataset (404 when it is not yours).
router = APIRouter(
    prefix=f"{API_PREFIX}/schemas", tags=["rows"], responses={**AUTHENTICATED, **errors(404)}
)

KEY_HELP = (
    "The row's primary key. Several key fields: the values in field order joined by ',', "
    "with ',' and '\\' inside a value written '\\,' and '\\\\'"
)
Key = Annotated[str, Path(description=KEY_HELP)]
Order = Annotated[
    str | None,
    Query(
        description="field.asc|field.desc, comma-separated; the primary key ends every order",
        json_schema_extra={"pattern": ORDER_PATTERN},
    ),
]
Select = Annotated[
    str | None,
    Query(
        description="Fields to return, comma-separated",
        json_schema_extra={"pattern": SELECT_PATTERN},
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page")]
Cursor = Annotated[str | None, Query(description="The 'next' of the previous page")]
Count = Annotated[CountMode | None, Query(description="Also count the matching rows (all pages)")]


@router.get(
    "/{name}/rows",
    summary="Rows: filter with ?field=op.value (eq neq lt lte gt gte like ilike in is)",
    responses=errors(400),
)
async def list_rows(
    name: str,
    request: Request,
    caller: ReadAccess,
    session: SessionDep,
    order: Order = None,
    select: Select = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    count: Count = None,
    owner: OwnerQuery = None,
) -> RowPage:
    query = ReadRequest(
        params=request.query_params.multi_items(),
        order=order,
        select=select,
        limit=limit,
        cursor=cursor,
        count=count,
    )
    return await datasets.read(
        session,
        caller=caller,
        name=name,
        owner_id=owner,
        reader=lambda schema: reading.list_rows(session, schema=schema, request=query),
    )


@router.get("/{name}/rows/{key:path}", summary="One row by its primary key")
async def read_row(
    name: str, key: Key, caller: ReadAccess, session: SessionDep, owner: OwnerQuery = None
) -> dict[str, Any]:
    return await records.read_one(session, caller=caller, name=name, owner_id=owner, key=key)


@router.patch(
    "/{name}/rows/{key:path}",
    summary="Change some fields of one row",
    responses={**WITH_BODY, **errors(409)},
)
async def update_row(
    name: str,
    key: Key,
    changes: Annotated[
        dict[str, Any],
        Body(
            description="The fields to change and their values",
            json_schema_extra={"minProperties": 1},  # records.patch: "nothing to change"
        ),
    ],
    caller: WriteAccess,
    session: SessionDep,
    owner: OwnerQuery = None,
) -> dict[str, Any]:
    schema = await datasets.load(session, caller=caller, name=name, owner_id=owner, lock="share")
    return await records.patch(session, schema=schema, key=key, changes=changes)


@router.delete(
    "/{name}/rows/{key:path}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete one row"
)
async def delete_row(
    name: str, key: Key, caller: WriteAccess, session: SessionDep, owner: OwnerQuery = None
) -> None:
    schema = await datasets.load(session, caller=caller, name=name, owner_id=owner, lock="share")
    await records.remove(session, schema=schema, key=key)
