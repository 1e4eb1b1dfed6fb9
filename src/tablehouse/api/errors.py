"""One place that turns errors into ``{"detail": ..., "code": ...}`` responses."""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from tablehouse.core.quoting import clip, quoted
from tablehouse.errors import TablehouseError

# Request validation errors listed in one answer; pydantic reports one per bad item, so a
# list of a million bad items would otherwise make a million entries.
MAX_LISTED_ERRORS = 100
# Members of one entry's ``loc`` or ``ctx`` kept; each is clipped like any quoted text.
_MAX_MEMBERS = 32


class ProblemResponse(JSONResponse):
    """An error answer. It may quote the request, and a JSON request can carry half of a
    UTF-16 pair (``"\\ud800"``), which no UTF-8 text can hold: such an answer is written
    with every non-ASCII character escaped, so the client reads back exactly what it sent
    instead of a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode("ascii")


def _code_for_status(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _domain_error(_request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, TablehouseError)
    return ProblemResponse(
        {"detail": _bounded_detail(exc.detail), "code": exc.code, **exc.extra},
        status_code=exc.status_code,
        headers=dict(exc.headers),
    )


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return ProblemResponse(
        {"detail": _bounded_detail(exc.detail), "code": _code_for_status(exc.status_code)},
        status_code=exc.status_code,
        headers=headers,
    )


def _allowed_methods(request: Request) -> str:
    """Every method the request's path serves. Starlette's 405 names only the methods of the
    first route whose path matched, and FastAPI makes one route per operation: a path with
    GET and POST would tell a PUT that only one of them exists. Each method is tried against
    the app's routes as routing would, so included routers are searched as well."""
    routes: list[BaseRoute] = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


async def _validation_error(_request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    # Bounded before encoding, so a huge input is never copied.
    listed = jsonable_encoder(_bounded_detail(list(found[:MAX_LISTED_ERRORS])))
    body: dict[str, object] = {"detail": listed, "code": "validation_error"}
    if len(found) > MAX_LISTED_ERRORS:
        body["errors_total"] = len(found)
    return ProblemResponse(body, status_code=422)


def _bounded_detail(detail: object) -> object:
    """``detail`` with whatever it quotes from the request cut short (core/quoting.py)."""
    if isinstance(detail, str):
        return clip(detail)
    if isinstance(detail, list):
        return [_bounded_entry(entry) for entry in detail]
    return quoted(detail)


def _bounded_entry(entry: object) -> object:
    """One problem (``{loc, msg, type, input, ctx}`` or ``{row, field, message}``)."""
    if not isinstance(entry, Mapping):
        return quoted(entry)
    return {
        str(key): quoted(value) if key == "input" else _bounded_member(value)
        for key, value in entry.items()
    }


def _bounded_member(value: object) -> object:
    if isinstance(value, list):
        return [quoted(item) for item in value[:_MAX_MEMBERS]]
    if isinstance(value, Mapping):
        members = list(value.items())[:_MAX_MEMBERS]
        return {clip(str(key)): quoted(item) for key, item in members}
    return quoted(value)


def _retry_shortly(detail: str, code: str) -> ProblemResponse:
    return ProblemResponse(
        {"detail": detail, "code": code}, status_code=503, headers={"Retry-After": "1"}
    )


async def _database_error(_request: Request, exc: Exception) -> ProblemResponse:
    """The database could not take the request now: a retryable 503, not a bug. Any other
    database error is one, and goes on to become a 500."""
    if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
        # SQLite's single writer stayed busy past the busy timeout.
        return _retry_shortly(
            "the database is busy with another write; retry shortly", "database_busy"
        )
    if isinstance(exc, PoolTimeout):
        return _retry_shortly("every database connection is in use; retry shortly", "database_busy")
    if (
        isinstance(exc, ConnectionError)
        or (isinstance(exc, DBAPIError) and _server_away(exc))
        or (isinstance(exc, TimeoutError) and _raised_in_sqlalchemy(exc))
    ):
        return _retry_shortly(
            "the database is not answering; retry shortly", "database_unavailable"
        )
    raise exc


def _server_away(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    # asyncpg reads a FATAL that arrives between two statements (a terminated backend, a
    # restart) as a protocol error, then refuses every operation on that connection with
    # "another operation is in progress" until it has read the end of the socket, so the
    # disconnect is not seen yet. A unit of work never runs two operations on one
    # connection at once: here it means the server ended the session.
    return isinstance(exc, InterfaceError | InternalError) and "another operation" in str(exc.orig)


def _raised_in_sqlalchemy(exc: TimeoutError) -> bool:
    """A connection attempt that got no answer within DB_CONNECT_TIMEOUT (a host that drops
    packets, a failover): the pool passes asyncpg's bare TimeoutError through unwrapped.
    Only one that came out of SQLAlchemy is the database's."""
    return any(
        str(frame.f_globals.get("__name__", "")).startswith("sqlalchemy.")
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TablehouseError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in (DBAPIError, PoolTimeout, ConnectionError, TimeoutError):
        app.add_exception_handler(error, _database_error)
    # Unexpected exceptions are answered by RequestContextMiddleware, which wraps the commit.
