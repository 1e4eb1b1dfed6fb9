"""POST /schemas/{name}/rows: load rows into a dataset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from tablehouse.api.dependencies import RuntimeDep, SessionDep
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, WITH_BODY, errors
from tablehouse.auth.dependencies import WriteAccess
from tablehouse.datasets import service as datasets
from tablehouse.datasets.router import OwnerQuery
from tablehouse.errors import PayloadTooLarge
from tablehouse.rows import ingest
from tablehouse.rows.schemas import IngestReport, OnInvalid
from tablehouse.rows.writer import OnConflict

router = APIRouter(prefix=f"{API_PREFIX}/schemas", tags=["rows"], responses=AUTHENTICATED)

BODY_FORMATS = {
    "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
    "application/x-ndjson": {"schema": {"type": "string"}},
    "text/csv": {"schema": {"type": "string"}},
}


@router.post(
    "/{name}/rows",
    status_code=status.HTTP_201_CREATED,
    summary="Load rows: a JSON object or array, NDJSON, or CSV with a header row",
    openapi_extra={"requestBody": {"required": True, "content": BODY_FORMATS}},
    responses={**WITH_BODY, **errors(404, 409, 413, 415)},
)
async def load_rows(
    name: str,
    request: Request,
    caller: WriteAccess,
    session: SessionDep,
    runtime: RuntimeDep,
    on_conflict: Annotated[OnConflict, Query(description="When a key exists")] = "error",
    on_invalid: Annotated[OnInvalid, Query(description="When a row is invalid")] = "error",
    owner: OwnerQuery = None,
) -> IngestReport:
    settings = runtime.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_ingest_bytes:
        raise PayloadTooLarge(
            f"the body is larger than the {settings.max_ingest_bytes:,}-byte limit "
            "(MAX_INGEST_BYTES)"
        )
    schema = await datasets.load(session, caller=caller, name=name, owner_id=owner, lock="share")
    report = await ingest.ingest(
        session,
        schema=schema,
        chunks=request.stream(),
        content_type=request.headers.get("content-type"),
        options=ingest.IngestOptions(
            on_conflict=on_conflict,
            on_invalid=on_invalid,
            batch_rows=settings.ingest_batch_rows,
            max_reported=settings.max_reported_row_errors,
            max_bytes=settings.max_ingest_bytes,
            content_encoding=request.headers.get("content-encoding"),
        ),
    )
    runtime.metrics.ingested_rows.inc(report.inserted)
    return report
