"""Plain ASGI middleware: request context, and readable start-up failures.

``RequestContextMiddleware`` gives every request an id, one access log line and a safe 500.
It is middleware rather than an exception handler so that it also wraps the unit of work's
commit and can put the request id on every response, errors included. It runs on every
request, so it does only what depends on the request: what can be known before (the header's
name, the logger, the metrics' series) is made once.
"""

from __future__ import annotations

import os
import re
import time

import orjson
import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tablehouse.core.metrics import UNMATCHED_ROUTE, Metrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode("latin-1")
# nginx's status for "the client closed the connection before the answer": logs and metrics.
CLIENT_CLOSED_REQUEST = 499
# A caller's own id is kept (useful behind a proxy) only if it is short and plain.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Below LOG_LEVEL (the access log at WARNING) its line is dropped by the logger's level check
# before any processor runs (core.logging).
log = structlog.get_logger("tablehouse.request")


def _request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID_HEADER:
            candidate = bytes(value).decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.match(candidate):
                return candidate
    # 32 hex digits, as uuid4().hex: an id only has to be unique, not a UUID, and 16 random
    # bytes are that without building a UUID object.
    return os.urandom(16).hex()


def _internal_error_body(request_id: str) -> bytes:
    return orjson.dumps(
        {
            "detail": "Internal server error; quote the request id when reporting it.",
            "code": "internal_error",
            "request_id": request_id,
        }
    )


class RequestContextMiddleware:
    """Every request's id, access log line, metrics and safe 500; and the lifespan's failed
    start-up in one line. One layer for both: each layer costs every request a call."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _with_short_startup_failure(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        request_id = _request_id_from(scope)
        # Bound for every line logged while the request is handled; reset afterwards.
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self._handle(scope, receive, send, request_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status = 500
        response_started = False
        id_header = (_REQUEST_ID_HEADER, request_id.encode("latin-1"))

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                # A new list: the response's own may be shared (a response object reused).
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except ClientDisconnect:
            # The client hung up while its body was read: no one is left to answer, and it
            # is no server error (no traceback, no 500 in the metrics).
            status = CLIENT_CLOSED_REQUEST
        except Exception:
            log.exception("request.unhandled_error")
            if response_started:
                raise  # the status line is gone; all we can do is drop the connection
            await _send_internal_error(send_with_request_id, request_id)
        finally:
            seconds = time.perf_counter() - started
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
            if self.metrics is not None:
                # The route's template (/api/v1/schemas/{name}), never the raw path: one
                # series per endpoint, however many names and ids users send.
                route = scope.get("route")
                template = getattr(route, "path", None) or UNMATCHED_ROUTE
                self.metrics.observe_request(template, scope["method"], status, seconds)


async def _send_internal_error(send: Send, request_id: str) -> None:
    body = _internal_error_body(request_id)
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _with_short_startup_failure(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    """The lifespan, its failed start-up reported to the server as one line instead of a
    traceback.

    Starlette hands the server the whole traceback of a failed lifespan, which buries
    "the database did not answer" under framework frames. The lifespan logs the failure
    itself (with a traceback when it is a bug), so the server only needs the last line.
    """

    async def send_short_failure(message: Message) -> None:
        if message["type"] == "lifespan.startup.failed" and message.get("message"):
            last_line = str(message["message"]).strip().splitlines()[-1]
            message = {**message, "message": last_line}
        await send(message)

    await app(scope, receive, send_short_failure)
