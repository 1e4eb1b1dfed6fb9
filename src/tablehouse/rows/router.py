"""POST /schemas/{name}/rows: load rows into a dataset (and rows.csv, rows.ndjson: a file's
bytes in the format the path names, for clients that send only JSON or bytes)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.api.dependencies import RuntimeDep, WriteSessionDep
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, WITH_BODY, errors
from tablehouse.api.runtime import Runtime
from tablehouse.auth.dependencies import WriteAccessBeforeBody
from tablehouse.auth.principal import Principal
from tablehouse.core.database import read_uow
from tablehouse.datasets import service as datasets
from tablehouse.datasets.router import OwnerQuery
from tablehouse.rows import ingest
from tablehouse.rows.parsing import body_decoder, without_bom
from tablehouse.rows.schemas import IngestReport, OnInvalid
from tablehouse.rows.spool import spooled
from tablehouse.rows.writer import OnConflict

router = APIRouter(prefix=f"{API_PREFIX}/schemas", tags=["rows"], responses=AUTHENTICATED)
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


async def loader(
    name: str, caller: WriteAccessBeforeBody, runtime: RuntimeDep, owner: OwnerQuery = None
) -> Principal:
    """The caller, once it may load rows into ``name``: a 404, like a 401 or 403, comes
    before the body is read, from a unit of work that has ended by then."""
    async with read_uow(runtime.read_session_factory) as session:
        await datasets.load(session, caller=caller, name=name, owner_id=owner)
    return caller


Loader = Annotated[Principal, Depends(loader)]


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
) -> ingest.IngestOptions:
    return ingest.IngestOptions(
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
    session: AsyncSession,
    runtime: Runtime,
    options: ingest.IngestOptions,
    owner: uuid.UUID | None,
) -> IngestReport:
    async with _received_body(request, runtime, caller) as body:
        schema = await datasets.load(
            session, caller=caller, name=name, owner_id=owner, lock="share"
        )
        report = await ingest.ingest(
            session,
            schema=schema,
            body=body,
            content_type=request.headers.get("content-type"),
            options=options,
        )
    runtime.metrics.ingested_rows.inc(report.inserted)
    return report


@asynccontextmanager
async def _received_body(
    request: Request, runtime: Runtime, caller: Principal
) -> AsyncIterator[IO[bytes]]:
    """The whole body, spooled, with one of the caller's load slots held (429 when none is
    free). The session is first used after this: no lock or connection waits for the client.
    A compressed body is spooled inflated, held to MAX_INGEST_BYTES once inflated too."""
    decode = body_decoder(request.headers.get("content-encoding"))  # 415 before any is read
    limit = runtime.settings.max_ingest_bytes
    with (
        runtime.ingest_slots.slot(caller.user.id),
        runtime.metrics.ingests_in_progress.track_inprogress(),
    ):
        async with spooled(without_bom(decode(request.stream(), limit))) as body:
            yield body
