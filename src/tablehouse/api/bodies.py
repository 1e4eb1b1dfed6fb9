"""Every request body within budget: a size limit, and a client that keeps sending.

``BodyBudgetMiddleware`` refuses a body larger than its route's limit (on ``Content-Length``
before the app runs, and by counting while it streams, for chunked bodies) with 413, and a
body that stops arriving (no data for a while, or too slow on average) with 408. Either
way the connection is closed: the rest of the body is not worth reading.

The refusal is raised inside the app's ``receive``, where the app may wrap it in anything
(FastAPI answers 400 "error parsing the body" for any error while it reads JSON), so the
middleware also replaces whatever answer the app then sends with its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tablehouse.errors import PayloadTooLarge, RequestTimeout, TablehouseError


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """The most bytes a body may have, and the setting that says so (named in the 413)."""

    max_bytes: int
    setting: str


@dataclass(frozen=True, slots=True)
class Pace:
    """How a client must send its body: some data every ``read_timeout`` seconds and, once
    ``grace`` seconds have passed, ``min_rate`` bytes a second on average (0: no minimum)."""

    read_timeout: float
    min_rate: int
    grace: float


@dataclass(frozen=True, slots=True)
class LargerBody:
    """A route that takes a larger body than the default (rows to load)."""

    method: str
    path: str  # a route template, /api/v1/schemas/{name}/rows
    limit: BodyLimit


class BodyBudgetMiddleware:
    def __init__(
        self, app: ASGIApp, *, default: BodyLimit, pace: Pace, larger: Sequence[LargerBody] = ()
    ) -> None:
        self.app = app
        self.default = default
        self.pace = pace
        self.larger = [(body.method, compile_path(body.path)[0], body.limit) for body in larger]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit.max_bytes:
            await _answer(send, _too_large(limit))
            return
        await _GuardedRequest(self.app, limit, self.pace).run(scope, receive, send)

    def _limit_for(self, scope: Scope) -> BodyLimit:
        for method, pattern, limit in self.larger:
            if scope["method"] == method and pattern.match(scope["path"]):
                return limit
        return self.default


class _GuardedRequest:
    """One request whose body is counted and timed as the app reads it."""

    def __init__(self, app: ASGIApp, limit: BodyLimit, pace: Pace) -> None:
        self.app, self.limit, self.pace = app, limit, pace
        self.received = 0
        self.first_read: float | None = None
        self.complete = False
        self.refusal: TablehouseError | None = None
        self.response_started = False  # by the app, before any refusal
        self.replaced = False  # the refusal went out in place of the app's answer

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def guarded_receive() -> Message:
            return await self._receive(receive)

        async def send_unless_refused(message: Message) -> None:
            if self.replaced:
                return
            if self.refusal is not None and not self.response_started:
                await self._replace(send)
                return
            self.response_started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, send_unless_refused)
        except Exception:
            if self.refusal is None or self.response_started:
                raise
            if not self.replaced:  # the app gave up without an answer
                await self._replace(send)

    async def _replace(self, send: Send) -> None:
        assert self.refusal is not None
        self.replaced = True
        await _answer(send, self.refusal)

    async def _receive(self, receive: Receive) -> Message:
        if self.complete:  # the body is in: the app may wait for a disconnect, unbounded
            return await receive()
        if self.first_read is None:
            self.first_read = time.monotonic()
        try:
            async with asyncio.timeout(self.pace.read_timeout):
                message = await receive()
        except TimeoutError:
            raise self._refuse(_stalled(self.pace)) from None
        if message["type"] != "http.request":
            self.complete = True
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.limit.max_bytes:
            raise self._refuse(_too_large(self.limit))
        self.complete = not message.get("more_body", False)
        if not self.complete and self._too_slow():
            raise self._refuse(_too_slow(self.pace))
        return message

    def _too_slow(self) -> bool:
        assert self.first_read is not None
        elapsed = time.monotonic() - self.first_read
        return elapsed > self.pace.grace and self.received < self.pace.min_rate * elapsed

    def _refuse(self, error: TablehouseError) -> TablehouseError:
        self.refusal = error
        return error


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # 20 digits are past any limit; more would only cost int() (or exceed its limit).
            return int(value[:20]) if value.isdigit() else None
    return None


def _too_large(limit: BodyLimit) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body is larger than the {limit.max_bytes:,}-byte limit of this endpoint "
        f"({limit.setting})"
    )


def _stalled(pace: Pace) -> RequestTimeout:
    return RequestTimeout(
        f"the body stopped arriving: nothing for {pace.read_timeout:g} s "
        "(BODY_READ_TIMEOUT_SECONDS); nothing was done"
    )


def _too_slow(pace: Pace) -> RequestTimeout:
    return RequestTimeout(
        f"the body arrived slower than {pace.min_rate:,} bytes a second "
        "(BODY_MIN_BYTES_PER_SECOND); nothing was done"
    )


async def _answer(send: Send, error: TablehouseError) -> None:
    """The refusal, and ``Connection: close``: the server stops reading the body."""
    body = orjson.dumps({"detail": error.message, "code": error.code})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
