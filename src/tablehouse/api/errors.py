"""One place that turns errors into ``{"detail": ..., "code": ...}`` responses."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tablehouse.errors import TablehouseError


def _code_for_status(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TablehouseError)
    return JSONResponse(
        {"detail": exc.detail, "code": exc.code, **exc.extra},
        status_code=exc.status_code,
        headers=dict(exc.headers),
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail, "code": _code_for_status(exc.status_code)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        {"detail": jsonable_encoder(exc.errors()), "code": "validation_error"},
        status_code=422,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """SQLite's single writer is busy past the busy timeout: a retryable 503, not a bug."""
    assert isinstance(exc, OperationalError)
    if "database is locked" not in str(exc.orig):
        raise exc
    return JSONResponse(
        {
            "detail": "the database is busy with another write; retry shortly",
            "code": "database_busy",
        },
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TablehouseError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _database_error)
    # Unexpected exceptions are answered by RequestContextMiddleware, which wraps the commit.
