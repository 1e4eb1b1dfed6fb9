"""The error responses each operation declares in the OpenAPI document.

Every error has one body, ``{"detail": ..., "code": ...}`` (see api/errors.py). Routers
declare the statuses they can answer with, so clients and the schema-driven fuzz tests know
every status an operation may return.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """An error: ``detail`` says what was wrong; ``code`` is stable, for programs."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[dict[str, Any]] = Field(
        description="A message, or one entry per problem for validation errors"
    )
    code: str = Field(description="Stable error code, e.g. schema_not_found")


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "string"},
    }
}

_DESCRIPTIONS = {
    400: "The request cannot be carried out as sent (malformed body, bad cursor, refused SQL)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "Authenticated, but not allowed (role, API key scope or dataset restriction)",
    404: "No such resource, or not yours",
    408: "The request body stopped arriving, or came too slowly; nothing was done",
    409: "Conflicts with what exists (a name or key already taken)",
    413: "The request body is larger than the server accepts",
    415: "The request body's content type is not accepted here",
    422: "Input that does not fit the operation's schema or rules; one entry per problem",
    429: "Too many requests, concurrent queries or loads; retry after the given seconds",
    503: "The database cannot take the request now (busy or not answering); retry shortly",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for these error statuses."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        declared[status] = entry
    return declared


# What any operation behind authentication may answer besides its own outcomes.
AUTHENTICATED = errors(401, 403, 422, 503)
# The same for operations anyone may call.
PUBLIC = errors(422, 503)
# Operations that read a request body (MAX_BODY_BYTES, BODY_READ_TIMEOUT_SECONDS).
WITH_BODY = errors(400, 408, 413)


def without_impossible_422(document: dict[str, Any]) -> None:
    """Drop the 422 of every operation that takes no parameters and no body: nothing it is
    sent can fail validation (AUTHENTICATED and PUBLIC declare 422 for all)."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if not operation.get("parameters") and "requestBody" not in operation:
                operation["responses"].pop("422", None)
