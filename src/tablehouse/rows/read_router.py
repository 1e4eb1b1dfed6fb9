"""/schemas/{name}/rows: list rows, and read, change or delete one row by its key."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_json

from tablehouse.api.dependencies import ReadSessionDep, WriteSessionDep
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, WITH_BODY, errors
from tablehouse.auth.dependencies import ReadAccess, WriteAccess
from tablehouse.datasets import service as datasets
from tablehouse.datasets.router import OwnerQuery
from tablehouse.rows import reading, records
from tablehouse.rows.filters import FILTER_PATTERN
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
# Declared for the document only: parse_filters reads it (and ?field=op.value) from the query
# string, so that both forms are one set of filters and every problem is told with its cause.
Filters = Annotated[
    list[str] | None,
    Query(
        alias="filter",
        description="field.op.value, any number of times, all must hold: artist.eq.Ann, "
        "plays.gt.10, id.in.(1,2,3), artist.is.null; operators: eq neq lt lte gt gte like ilike "
        "in is. The same as ?field=op.value (docs/api.md, Filters)",
        json_schema_extra={"items": {"type": "string", "pattern": FILTER_PATTERN}},
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page")]
Cursor = Annotated[str | None, Query(description="The 'next' of the previous page")]
Count = Annotated[CountMode | None, Query(description="Also count the matching rows (all pages)")]


def _as_json(content: BaseModel | dict[str, Any]) -> Response:
    """``content`` written as FastAPI would write it. A json value stored before nesting was
    limited (MAX_JSON_DEPTH) can be deeper than pydantic-core writes: the standard library's
    encoder goes deeper, so such a row still reads rather than failing every page with it."""
    try:
        body = to_json(content)
    except PydanticSerializationError:
        plain = dict(content)  # a model's fields, or a row; the values are JSON already
        body = json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")


@router.get(
    "/{name}/rows",
    summary="Rows: filter with ?filter=field.op.value or ?field=op.value (eq neq lt lte gt gte "
    "like ilike in is)",
    response_model=RowPage,
    responses=errors(400),
)
async def list_rows(
    name: str,
    request: Request,
    caller: ReadAccess,
    session: ReadSessionDep,
    filters: Filters = None,  # read with the other filters, from request.query_params
    order: Order = None,
    select: Select = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    count: Count = None,
    owner: OwnerQuery = None,
) -> Response:
    query = ReadRequest(
        params=request.query_params.multi_items(),
        order=order,
        select=select,
        limit=limit,
        cursor=cursor,
        count=count,
    )
    page = await datasets.read(
        session,
        caller=caller,
        name=name,
        owner_id=owner,
        reader=lambda schema: reading.list_rows(session, schema=schema, request=query),
    )
    return _as_json(page)


@router.get(
    "/{name}/rows/{key:path}",
    summary="One row by its primary key",
    response_model=dict[str, Any],
)
async def read_row(
    name: str, key: Key, caller: ReadAccess, session: ReadSessionDep, owner: OwnerQuery = None
) -> Response:
    row = await records.read_one(session, caller=caller, name=name, owner_id=owner, key=key)
    return _as_json(row)


@router.patch(
    "/{name}/rows/{key:path}",
    summary="Change some fields of one row",
    response_model=dict[str, Any],
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
    session: WriteSessionDep,
    owner: OwnerQuery = None,
) -> Response:
    schema = await datasets.load(session, caller=caller, name=name, owner_id=owner, lock="share")
    return _as_json(await records.patch(session, schema=schema, key=key, changes=changes))


@router.delete(
    "/{name}/rows/{key:path}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete one row"
)
async def delete_row(
    name: str, key: Key, caller: WriteAccess, session: WriteSessionDep, owner: OwnerQuery = None
) -> None:
    schema = await datasets.load(session, caller=caller, name=name, owner_id=owner, lock="share")
    await records.remove(session, schema=schema, key=key)
