"""Domain errors. Services raise these; one HTTP handler maps them to responses.

This module knows HTTP status numbers but nothing of FastAPI, so services and the
CLI can raise and catch the same errors.
"""

from __future__ import annotations

from collections.abc import Mapping


class TablehouseError(Exception):
    """Base of every error a user can cause or see."""

    status_code: int = 400
    code: str = "bad_request"
    # True for errors that report an outcome whose side effects must stick (the unit of
    # work commits before raising), such as a counted login failure.
    keeps_changes: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def headers(self) -> Mapping[str, str]:
        return {}

    @property
    def detail(self) -> object:
        """The ``detail`` of the response body: the message, or a list for validation errors."""
        return self.message

    @property
    def extra(self) -> Mapping[str, object]:
        """More members of the response body beside ``detail`` and ``code``."""
        return {}


class SettingsError(TablehouseError):
    """Configuration is missing or malformed; the process cannot start."""

    code = "invalid_settings"


class BadRequest(TablehouseError):
    status_code = 400
    code = "bad_request"


Location = tuple[str | int, ...]


class QueryRefused(BadRequest):
    """A SQL statement that may not run, with where in the text the problem is (1-based)."""

    code = "query_refused"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.line = line
        self.column = column

    @property
    def extra(self) -> Mapping[str, object]:
        if self.line is None:
            return {}
        return {"position": {"line": self.line, "column": self.column}}


class InvalidInput(TablehouseError):
    """Values that passed the schema but break rules only the service can check.

    Rendered in FastAPI's 422 shape, so clients handle one kind of validation error.
    """

    status_code = 422
    code = "validation_error"

    def __init__(self, message: str, *, loc: Location, code: str = "value_error") -> None:
        super().__init__(message)
        self.problems: list[tuple[Location, str, str]] = [(loc, message, code)]

    @classmethod
    def of(cls, problems: list[tuple[Location, str, str]]) -> InvalidInput:
        """Several problems at once: ``(location, message, type)`` each."""
        first_loc, first_message, first_code = problems[0]
        error = cls(first_message, loc=first_loc, code=first_code)
        error.problems = list(problems)
        return error

    @property
    def detail(self) -> object:
        return [{"loc": list(loc), "msg": msg, "type": kind} for loc, msg, kind in self.problems]


class InvalidRows(TablehouseError):
    """Rows that do not fit their dataset: ``{row, field, message}`` each."""

    status_code = 422
    code = "invalid_rows"

    def __init__(self, problems: list[dict[str, object]], *, total: int) -> None:
        super().__init__(f"{total} invalid value(s) in the rows")
        self.problems = problems
        self.total = total

    @property
    def detail(self) -> object:
        return self.problems


class UnsupportedMediaType(TablehouseError):
    status_code = 415
    code = "unsupported_media_type"


class UnsupportedContentEncoding(UnsupportedMediaType):
    """A body compressed in a way the server cannot read; says which ways it can (RFC 9110)."""

    code = "unsupported_content_encoding"

    def __init__(self, message: str, *, accepted: str) -> None:
        super().__init__(message)
        self.accepted = accepted

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Accept-Encoding": self.accepted}


class NotAuthenticated(TablehouseError):
    status_code = 401
    code = "not_authenticated"

    @property
    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(TablehouseError):
    status_code = 403
    code = "forbidden"


class NotFound(TablehouseError):
    status_code = 404
    code = "not_found"


class Conflict(TablehouseError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(TablehouseError):
    status_code = 413
    code = "payload_too_large"


class RequestTimeout(TablehouseError):
    """The client stopped sending its body, or sent it too slowly."""

    status_code = 408
    code = "request_timeout"


class Throttled(TablehouseError):
    status_code = 429
    code = "throttled"

    def __init__(self, message: str, *, retry_after_seconds: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_seconds = retry_after_seconds

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class ServiceUnavailable(TablehouseError):
    status_code = 503
    code = "service_unavailable"

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": "1"}


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
