"""POST /schemas/{name}/rows: load rows into a dataset."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from tablehouse.api.dependencies import RuntimeDep, SessionDep
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
# The one route whose body may be larger than MAX_BODY_BYTES (app.py gives it MAX_INGEST_BYTES).
INGEST_PATH = f"{API_PREFIX}/schemas/{{name}}/rows"

BODY_FORMATS = {
    "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
    "application/x-ndjson": {"schema": {"type": "string"}},
    "text/csv": {"schema": {"type": "string"}},
}


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
    responses={**WITH_BODY, **errors(404, 409, 415, 429)},
)
async def load_rows(
    name: str,
    request: Request,
    caller: Loader,
    session: SessionDep,
    runtime: RuntimeDep,
    on_conflict: Annotated[OnConflict, Query(description="When a key exists")] = "error",
    on_invalid: Annotated[OnInvalid, Query(description="When a row is invalid")] = "error",
    owner: OwnerQuery = None,
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
            options=ingest.IngestOptions(
                on_conflict=on_conflict,
                on_invalid=on_invalid,
                batch_rows=runtime.settings.ingest_batch_rows,
                max_reported=runtime.settings.max_reported_row_errors,
            ),
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
