"""/schemas/{name}/rows: load rows into a dataset (JSON, NDJSON or CSV; and rows.csv,
rows.ndjson: a file's bytes in the format the path names, for clients that send only JSON or
bytes), list them, and read, change or delete one row by its key."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_json

from tablehouse.api.dependencies import ReadSessionDep, RuntimeDep, WriteSessionDep
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, WITH_BODY, errors
from tablehouse.api.runtime import Runtime
from tablehouse.auth.dependencies import ReadAccess
from tablehouse.auth.principal import Principal
from tablehouse.core.database import WriteSession
from tablehouse.datasets.dependencies import OwnerQuery, SharedDatasetDep
from tablehouse.rows import service
from tablehouse.rows.dependencies import Loader
from tablehouse.rows.schemas import (
    DEFAULT_LIMIT,
    FILTER_PATTERN,
    MAX_LIMIT,
    ORDER_PATTERN,
    SELECT_PATTERN,
    CountMode,
    IngestOptions,
    IngestReport,
    OnConflict,
    OnInvalid,
    ReadRequest,
    RowPage,
)

router = APIRouter(prefix=f"{API_PREFIX}/schemas", tags=["rows"], responses=AUTHENTICATED)
# Every operation names a dataset (404 when it is not yours).
NAMED = errors(404)
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
    responses={**NAMED, **errors(400)},
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
    page = await service.list_rows(session, caller=caller, name=name, owner_id=owner, request=query)
    return _as_json(page)


@router.get(
    "/{name}/rows/{key:path}",
    summary="One row by its primary key",
    response_model=dict[str, Any],
    responses=NAMED,
)
async def read_row(
    name: str, key: Key, caller: ReadAccess, session: ReadSessionDep, owner: OwnerQuery = None
) -> Response:
    row = await service.read_row(session, caller=caller, name=name, owner_id=owner, key=key)
    return _as_json(row)


@router.patch(
    "/{name}/rows/{key:path}",
    summary="Change some fields of one row",
    response_model=dict[str, Any],
    responses={**NAMED, **WITH_BODY, **errors(409)},
)
async def update_row(
    name: str,  # the dataset's, as SharedDatasetDep reads it: declared here to come before key
    key: Key,
    changes: Annotated[
        dict[str, Any],
        Body(
            description="The fields to change and their values",
            json_schema_extra={"minProperties": 1},  # checked_changes: "nothing to change"
        ),
    ],
    dataset: SharedDatasetDep,
    session: WriteSessionDep,
) -> Response:
    row = await service.update_row(session, dataset=dataset, key=key, changes=changes)
    return _as_json(row)


@router.delete(
    "/{name}/rows/{key:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete one row",
    responses=NAMED,
)
async def delete_row(
    name: str,  # the dataset's, as SharedDatasetDep reads it: declared here to come before key
    key: Key,
    dataset: SharedDatasetDep,
    session: WriteSessionDep,
) -> None:
    await service.delete_row(session, dataset=dataset, key=key)


# The routes whose body may be larger than MAX_BODY_BYTES (app.py gives them MAX_INGEST_BYTES).
INGEST_PATH = f"{API_PREFIX}/schemas/{{name}}/rows"
INGEST_PATHS = (INGEST_PATH, f"{INGEST_PATH}.csv", f"{INGEST_PATH}.ndjson")

_ROW = {
    "type": "object",
    "additionalProperties": True,
    "description": "One row: each field's name and its value",
}
BODY_FORMATS = {
    "application/json": {
        "schema": {
            "oneOf": [_ROW, {"type": "array", "items": _ROW}],
            "description": "One row (an object) or several (an array of objects)",
        }
    },
    "application/x-ndjson": {
        "schema": {"type": "string", "description": "UTF-8 text, one JSON object per line"}
    },
    "text/csv": {
        "schema": {
            "type": "string",
            "description": "UTF-8 text: a header row naming the fields, then one row per line",
        }
    },
}
# rows.csv and rows.ndjson: one body, bytes, which generators turn into a file argument (one
# with a JSON array besides cannot be generated into working code by openapi-python-client).
FILE_BODY = {
    "application/octet-stream": {
        "schema": {
            "type": "string",
            "format": "binary",
            "description": "The file's bytes, UTF-8, in the format the path names; the "
            "Content-Type is not read",
        }
    }
}
_LOAD_RESPONSES = {**WITH_BODY, **errors(404, 409, 415, 429)}
OnConflictQuery = Annotated[OnConflict, Query(description="When a key exists")]
OnInvalidQuery = Annotated[OnInvalid, Query(description="When a row is invalid")]


@router.post(
    "/{name}/rows",
    status_code=status.HTTP_201_CREATED,
    summary="Load rows: a JSON object or array, NDJSON, or CSV with a header row",
    openapi_extra={"requestBody": {"required": True, "content": BODY_FORMATS}},
    responses=_LOAD_RESPONSES,
)
async def load_rows(
    name: str,
    request: Request,
    caller: Loader,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    on_conflict: OnConflictQuery = "error",
    on_invalid: OnInvalidQuery = "error",
    owner: OwnerQuery = None,
) -> IngestReport:
    options = _options(runtime, on_conflict, on_invalid, form=None)
    return await _load(name, request, caller, session, runtime, options, owner)


@router.post(
    "/{name}/rows.csv",
    status_code=status.HTTP_201_CREATED,
    summary="Load rows from CSV bytes: a header row, then one row per line",
    openapi_extra={"requestBody": {"required": True, "content": FILE_BODY}},
    responses=_LOAD_RESPONSES,
)
async def load_rows_csv(
    name: str,
    request: Request,
    caller: Loader,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    on_conflict: OnConflictQuery = "error",
    on_invalid: OnInvalidQuery = "error",
    owner: OwnerQuery = None,
) -> IngestReport:
    options = _options(runtime, on_conflict, on_invalid, form="csv")
    return await _load(name, request, caller, session, runtime, options, owner)


@router.post(
    "/{name}/rows.ndjson",
    status_code=status.HTTP_201_CREATED,
    summary="Load rows from NDJSON bytes: one JSON object per line",
    openapi_extra={"requestBody": {"required": True, "content": FILE_BODY}},
    responses=_LOAD_RESPONSES,
)
async def load_rows_ndjson(
    name: str,
    request: Request,
    caller: Loader,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    on_conflict: OnConflictQuery = "error",
    on_invalid: OnInvalidQuery = "error",
    owner: OwnerQuery = None,
) -> IngestReport:
    options = _options(runtime, on_conflict, on_invalid, form="ndjson")
    return await _load(name, request, caller, session, runtime, options, owner)


def _options(
    runtime: Runtime, on_conflict: OnConflict, on_invalid: OnInvalid, *, form: str | None
) -> IngestOptions:
    return IngestOptions(
        on_conflict=on_conflict,
        on_invalid=on_invalid,
        batch_rows=runtime.settings.ingest_batch_rows,
        max_reported=runtime.settings.max_reported_row_errors,
        form=form,
    )


async def _load(
    name: str,
    request: Request,
    caller: Principal,
    session: WriteSession,
    runtime: Runtime,
    options: IngestOptions,
    owner: uuid.UUID | None,
) -> IngestReport:
    return await service.load_rows(
        session,
        runtime,
        caller=caller,
        name=name,
        owner_id=owner,
        chunks=request.stream(),
        content_type=request.headers.get("content-type"),
        content_encoding=request.headers.get("content-encoding"),
        options=options,
    )
