"""POST /query: one read-only SQL statement over the caller's datasets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response, StreamingResponse

from tablehouse.api.dependencies import ReadSessionDep
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, WITH_BODY, errors
from tablehouse.auth.dependencies import QueryAccess
from tablehouse.query import service
from tablehouse.query.dependencies import QueryTargetDep
from tablehouse.query.schemas import QueryRequest, QueryResult

router = APIRouter(prefix=API_PREFIX, tags=["query"], responses=AUTHENTICATED)

STREAM_TYPES: dict[str, service.StreamFormat] = {
    "text/csv": "csv",
    "application/x-ndjson": "ndjson",
}


def _stream_format(accept: str | None) -> service.StreamFormat | None:
    """CSV or NDJSON when the client asks for one of them; JSON otherwise."""
    for part in (accept or "").split(","):
        form = STREAM_TYPES.get(part.split(";", 1)[0].strip().lower())
        if form is not None:
            return form
    return None


_ERRORS = {**WITH_BODY, **errors(404, 429)}
# The Accept header picks the form of the answer. It is not declared as a parameter (OpenAPI
# ignores one named Accept); the 200's content types say what it may ask for.
_Accept = Annotated[str | None, Header(include_in_schema=False)]


@router.post(
    "/query",
    response_model=QueryResult,
    summary="Run one read-only SQL statement over your datasets",
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            "description": "JSON by default; CSV or NDJSON (streamed) by the Accept header",
        },
        **_ERRORS,
    },
)
async def run_query(
    body: QueryRequest,
    caller: QueryAccess,
    session: ReadSessionDep,
    target: QueryTargetDep,
    accept: _Accept = None,
) -> Response:
    form = _stream_format(accept)
    if form is None:
        document = await service.answer(session, caller=caller, request=body, target=target)
        return Response(document, media_type="application/json")
    return await _streamed(body, caller, session, target, form)


@router.post(
    "/query.csv",
    response_class=Response,
    summary="Run one read-only SQL statement; the rows as CSV (as /query with Accept: text/csv)",
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "A header row, then one line per row, streamed",
            "headers": {
                "X-Query-Id": {"description": "The query's id", "schema": {"type": "string"}}
            },
        },
        **_ERRORS,
    },
)
async def run_query_csv(
    body: QueryRequest, caller: QueryAccess, session: ReadSessionDep, target: QueryTargetDep
) -> Response:
    return await _streamed(body, caller, session, target, "csv")


async def _streamed(
    body: QueryRequest,
    caller: QueryAccess,
    session: ReadSessionDep,
    target: QueryTargetDep,
    form: service.StreamFormat,
) -> Response:
    query_id, chunks = await service.stream(
        session, caller=caller, request=body, target=target, form=form
    )
    media_type = "text/csv; charset=utf-8" if form == "csv" else "application/x-ndjson"
    return StreamingResponse(chunks, media_type=media_type, headers={"X-Query-Id": str(query_id)})
