"""Dependencies shared by every router."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.api.runtime import Runtime
from tablehouse.core.database import read_uow, uow


# Dependencies are coroutines even when they do not await: FastAPI runs a plain function in
# a thread pool, and that hop costs more than the call itself.
async def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READS_ONLY = "__tablehouse_reads_only__"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def reads_only(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint that changes nothing although its method is not GET (a query
    sent with POST for its body): it gets a read unit of work, like a GET."""
    setattr(endpoint, _READS_ONLY, True)
    return endpoint


def is_read(request: Request) -> bool:
    """GET, HEAD, OPTIONS and ``reads_only`` endpoints change nothing (bookkeeping such as
    "last used" waits)."""
    return request.method in SAFE_METHODS or getattr(
        request.scope.get("endpoint"), _READS_ONLY, False
    )


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # The runtime straight from the app, not as a dependency: one fewer to resolve per request.
    runtime = cast(Runtime, request.app.state.runtime)
    if is_read(request):
        async with read_uow(runtime.read_session_factory) as session:
            yield session
        return
    async with uow(runtime.session_factory) as session:
        yield session


# scope="function": the unit of work ends when the handler returns, before the response is
# sent, so a failed commit becomes an error response instead of a 2xx for lost data.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_write_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with uow(runtime.session_factory) as session:
        yield session


# For the rare GET that changes something (a link in a mail): a unit of work that writes.
WriteSessionDep = Annotated[AsyncSession, Depends(get_write_session, scope="function")]
